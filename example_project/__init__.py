"""The example site of django-giosg: ``scripts/demo`` runs it offline against the simulator."""
