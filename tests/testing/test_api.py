"""The simulated REST API: strict where giosg is, and right when the request is right."""

from __future__ import annotations

import pytest

from django_giosg.testing import OTHER_ORGANIZATION_ID, GiosgSimulator

from .conftest import API, VISITOR

CHAT_LESS = "00000000-0000-4000-8000-000000000000"


def org_paths(room: str) -> list[tuple[str, str, dict[str, object]]]:
    """One request to every organization endpoint: (method, path, request kwargs)."""
    variables = f"rooms/{room}/visitors/{VISITOR}/variables"
    return [
        ("GET", "rooms", {}),
        ("GET", variables, {}),
        ("POST", variables, {"json": {"key": "k", "value": "v"}}),
        ("DELETE", f"{variables}/k", {}),
        ("GET", f"rooms/{room}/visitors/{VISITOR}/chats", {}),
        ("GET", f"owned_chats/{CHAT_LESS}", {}),
        ("PATCH", f"owned_chats/{CHAT_LESS}", {"json": {"is_ended": True}}),
    ]


class TestAuthentication:
    @pytest.mark.parametrize("index", range(7))
    def test_every_endpoint_needs_the_token(self, api: API, room: str, index: int) -> None:
        method, path, kwargs = org_paths(room)[index]
        del api.session.headers["Authorization"]
        response = api.request(method, path, **kwargs)
        assert response.status_code == 401
        assert response.json() == {"detail": "Authentication credentials were not provided."}
        assert response.headers["WWW-Authenticate"] == "Token"

    @pytest.mark.parametrize(
        "header",
        ["Token wrong", "Bearer giosg-simulator-token", "giosg-simulator-token", "Token "],
    )
    def test_a_wrong_token_or_scheme_is_refused(self, api: API, header: str) -> None:
        response = api.get("rooms", headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json() == {"detail": "Invalid token."}

    def test_users_me_answers_for_the_token(self, api: API, sim: GiosgSimulator) -> None:
        response = api.get("/api/v5/users/me")
        assert response.status_code == 200
        assert response.json()["organization_id"] == sim.organization_id

    @pytest.mark.parametrize("index", range(7))
    def test_another_organization_is_forbidden(
        self, api: API, sim: GiosgSimulator, room: str, index: int
    ) -> None:
        method, path, kwargs = org_paths(room)[index]
        url = api.url(path).replace(sim.organization_id, OTHER_ORGANIZATION_ID)
        response = api.session.request(method, url, timeout=5, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 403

    def test_the_organization_id_is_case_insensitive(self, api: API, sim: GiosgSimulator) -> None:
        url = api.url("rooms").replace(sim.organization_id, sim.organization_id.upper())
        assert api.session.get(url, timeout=5).status_code == 200


class TestNotFound:
    def test_unknown_paths(self, api: API) -> None:
        for path in ("/api/v5/nothing", "/api/v4/users/me", "rooms/", "/"):
            response = api.get(path)
            assert response.status_code == 404, path
            assert response.json() == {"detail": "Not found."}

    def test_unknown_room(self, api: API) -> None:
        assert (
            api.post(api.variables(CHAT_LESS), json={"key": "k", "value": "v"}).status_code == 404
        )
        assert api.get(api.chats(CHAT_LESS)).status_code == 404
        assert api.delete(f"{api.variables(CHAT_LESS)}/k").status_code == 404
        assert api.get(api.variables(CHAT_LESS)).status_code == 404

    def test_unknown_visitor_or_key_on_delete(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        assert api.delete(f"{api.variables(room)}/name").status_code == 404  # visitor unknown
        sim.seed_visitor(VISITOR, variables={"name": "Ann"})
        assert api.delete(f"{api.variables(room)}/other").status_code == 404  # key unknown
        assert api.delete(f"{api.variables(room)}/name").status_code == 204
        assert api.delete(f"{api.variables(room)}/name").status_code == 404  # already gone

    def test_unknown_visitor_has_no_variable_list(self, api: API, room: str) -> None:
        assert api.get(api.variables(room)).status_code == 404

    def test_unknown_chat(self, api: API) -> None:
        assert api.get(f"owned_chats/{CHAT_LESS}").status_code == 404
        assert api.patch(f"owned_chats/{CHAT_LESS}", json={"is_ended": True}).status_code == 404

    def test_chats_of_shared_rooms_are_not_owned(
        self, api: API, sim: GiosgSimulator, shared_room: str
    ) -> None:
        (chat,) = sim.seed_visitor(VISITOR, rooms=[shared_room])
        listed = api.get(api.chats(shared_room)).json()["results"]
        assert [c["id"] for c in listed] == [chat]
        assert listed[0]["room_organization_id"] == OTHER_ORGANIZATION_ID
        assert api.get(f"owned_chats/{chat}").status_code == 404
        assert api.patch(f"owned_chats/{chat}", json={"is_ended": True}).status_code == 404
        assert sim.open_chats(VISITOR) == [chat]


class TestBadRequests:
    @pytest.mark.parametrize(
        ("body", "errors"),
        [
            ({"value": "v"}, {"key": ["This field is required."]}),
            ({"key": "k"}, {"value": ["This field is required."]}),
            ({}, {"key": ["This field is required."], "value": ["This field is required."]}),
            ({"key": "k", "value": 42}, {"value": ["Not a valid string."]}),
            ({"key": "k", "value": True}, {"value": ["Not a valid string."]}),
            ({"key": "k", "value": ["v"]}, {"value": ["Not a valid string."]}),
            ({"key": "k", "value": None}, {"value": ["This field may not be null."]}),
            ({"key": 7, "value": "v"}, {"key": ["Not a valid string."]}),
            ({"key": " ", "value": "v"}, {"key": ["This field may not be blank."]}),
        ],
    )
    def test_variable_fields(
        self, api: API, sim: GiosgSimulator, room: str, body: object, errors: object
    ) -> None:
        response = api.post(api.variables(room), json=body)
        assert response.status_code == 400
        assert response.json() == errors
        assert sim.state(VISITOR)["rooms"] == {}  # nothing stored, the visitor not even seen

    @pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"key=k&value=v"])
    def test_malformed_json(self, api: API, room: str, raw: bytes) -> None:
        response = api.post(
            api.variables(room), data=raw, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["detail"].startswith("JSON parse error")

    @pytest.mark.parametrize("raw", [b"[]", b'["k", "v"]', b'"k"', b"1", b"null"])
    def test_a_body_that_is_not_an_object(self, api: API, room: str, raw: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        response = api.post(api.variables(room), data=raw, headers=headers)
        assert response.status_code == 400
        assert "Expected a dictionary" in response.json()["non_field_errors"][0]

    @pytest.mark.parametrize(
        "content_type", [None, "text/plain", "application/x-www-form-urlencoded"]
    )
    def test_content_type_is_checked_on_post_and_patch(
        self, api: API, sim: GiosgSimulator, room: str, content_type: str | None
    ) -> None:
        (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
        headers = {"Content-Type": content_type} if content_type else {}
        body = b'{"key": "k", "value": "v"}'
        assert api.post(api.variables(room), data=body, headers=headers).status_code == 415
        response = api.patch(f"owned_chats/{chat}", data=b'{"is_ended": true}', headers=headers)
        assert response.status_code == 415
        assert "Unsupported media type" in response.json()["detail"]
        assert sim.open_chats(VISITOR) == [chat]
        assert sim.variables(VISITOR) == {}

    def test_content_type_parameters_are_fine(self, api: API, room: str) -> None:
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        response = api.post(api.variables(room), data=b'{"key":"k","value":"v"}', headers=headers)
        assert response.status_code == 201

    @pytest.mark.parametrize("value", ["true", 1, None, "yes"])
    def test_is_ended_must_be_a_boolean(
        self, api: API, sim: GiosgSimulator, room: str, value: object
    ) -> None:
        (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
        response = api.patch(f"owned_chats/{chat}", json={"is_ended": value})
        assert response.status_code == 400
        assert response.json() == {"is_ended": ["Must be a valid boolean."]}
        assert sim.open_chats(VISITOR) == [chat]

    def test_the_is_ended_filter_must_be_a_boolean(self, api: API, room: str) -> None:
        response = api.get(api.chats(room), params={"is_ended": "maybe"})
        assert response.status_code == 400


class TestMethods:
    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("PUT", "variables", "GET, POST"),
            ("DELETE", "variables", "GET, POST"),
            ("GET", "variables/k", "DELETE"),
            ("POST", "chats", "GET"),
            ("DELETE", "rooms", "GET"),
            ("POST", "owned_chats/x", "GET, PATCH"),
            ("OPTIONS", "owned_chats/x", "GET, PATCH"),
        ],
    )
    def test_wrong_method(self, api: API, room: str, method: str, path: str, allow: str) -> None:
        prefix = f"rooms/{room}/visitors/{VISITOR}/"
        full = path if path in ("rooms",) or path.startswith("owned") else prefix + path
        response = api.request(method, full)
        assert response.status_code == 405
        assert response.headers["Allow"] == allow
        assert response.json() == {"detail": f'Method "{method}" not allowed.'}


class TestWhenRight:
    def test_set_list_and_delete_variables(self, api: API, sim: GiosgSimulator, room: str) -> None:
        response = api.post(api.variables(room), json={"key": "username", "value": "Ann Smith"})
        assert response.status_code == 201
        body = response.json()
        assert body["key"] == "username"
        assert body["value"] == "Ann Smith"
        assert body["visitor_id"] == VISITOR
        assert body["room_id"] == room
        assert body["created_at"].endswith("Z")
        api.post(api.variables(room), json={"key": "user_id", "value": "7"})
        listed = api.get(api.variables(room)).json()
        assert [v["key"] for v in listed["results"]] == ["username", "user_id"]
        assert sim.variables(VISITOR) == {room: {"username": "Ann Smith", "user_id": "7"}}
        response = api.delete(f"{api.variables(room)}/username")
        assert response.status_code == 204
        assert response.content == b""
        assert sim.variables(VISITOR) == {room: {"user_id": "7"}}

    def test_keys_are_percent_decoded(self, api: API, sim: GiosgSimulator, room: str) -> None:
        api.post(api.variables(room), json={"key": "a/b c", "value": "v"})
        assert api.delete(f"{api.variables(room)}/a%2Fb%20c").status_code == 204
        assert sim.variables(VISITOR) == {}

    def test_room_ids_are_case_insensitive(self, api: API, sim: GiosgSimulator, room: str) -> None:
        response = api.post(api.variables(room.upper()), json={"key": "k", "value": "v"})
        assert response.status_code == 201
        assert sim.variables(VISITOR) == {room: {"k": "v"}}

    def test_end_a_chat(self, api: API, sim: GiosgSimulator, room: str) -> None:
        chat, other = sim.seed_visitor(VISITOR, rooms=[room], open_chats=2)
        before = api.get(f"owned_chats/{chat}").json()
        assert before["is_ended"] is False
        assert before["ended_at"] is None
        response = api.patch(f"owned_chats/{chat}", json={"is_ended": True})
        assert response.status_code == 200
        assert response.json()["is_ended"] is True
        assert response.json()["ended_at"] is not None
        assert api.get(f"owned_chats/{chat}").json()["is_ended"] is True
        assert sim.open_chats(VISITOR) == [other]

    def test_a_patch_that_does_not_end_leaves_the_chat_open(
        self, api: API, sim: GiosgSimulator, room: str
    ) -> None:
        (chat,) = sim.seed_visitor(VISITOR, rooms=[room])
        response = api.patch(f"owned_chats/{chat}", json={"is_ended": False, "other": 1})
        assert response.status_code == 200
        assert sim.open_chats(VISITOR) == [chat]

    def test_chats_are_listed_newest_first(self, api: API, sim: GiosgSimulator, room: str) -> None:
        chats = sim.seed_visitor(VISITOR, rooms=[room], open_chats=3)
        listed = api.get(api.chats(room)).json()["results"]
        assert [c["id"] for c in listed] == list(reversed(chats))
        assert {c["room_id"] for c in listed} == {room}
