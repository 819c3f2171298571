"""The example site's own pages: the home page, and what giosg holds about this visitor."""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from django_giosg.session import get_visitor_id


def simulator_url() -> str | None:
    """Where the offline site's simulator listens; ``None`` against the real giosg."""
    url: str | None = getattr(settings, "GIOSG_SIMULATOR_URL", None)
    return url


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "example/home.html", {"visitor_id": get_visitor_id(request.session)})


@require_GET
def giosg_state(request: HttpRequest) -> JsonResponse:
    """The panel's data: the simulator's state for the visitor this session captured.

    Read here, on the server: the simulator's visitor state is not open to other origins, and
    the page may see only its own visitor.
    """
    user = request.user
    simulator = simulator_url()
    data: dict[str, Any] = {
        "user": user.get_username() if user.is_authenticated else None,
        "visitor_id": get_visitor_id(request.session),
        "simulator": simulator is not None,
        "rooms": [],
    }
    if simulator is None or data["visitor_id"] is None:
        return JsonResponse(data)
    url = f"{simulator}/_simulator/visitors/{data['visitor_id']}"
    try:
        answer = requests.get(url, timeout=2)
        answer.raise_for_status()
        state = answer.json()
    except (requests.RequestException, ValueError):
        data["error"] = f"The giosg simulator at {simulator} does not answer."
        return JsonResponse(data)
    configured = {room.lower() for room in settings.GIOSG["ROOM_IDS"]}
    data["rooms"] = [
        {
            "id": room_id,
            "name": room["name"],
            "configured": room_id in configured,
            "shared": room["is_shared"],
            "variables": room["variables"],
            "chats": room["chats"],
        }
        for room_id, room in state["rooms"].items()
    ]
    return JsonResponse(data)
