"""django-giosg: tie a Django site's logins to the giosg live chat."""

__version__ = "0.1.0.dev0"
