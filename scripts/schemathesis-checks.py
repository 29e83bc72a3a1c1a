"""Checks of contactsd's envelope for scripts/schemathesis (loaded through SCHEMATHESIS_HOOKS).

In the default HTTP status mode every answer that carries the envelope is HTTP 200, so a failure
is told by the envelope's `code`, not by the status: these checks read `code`, so that no server
error and no stray code can hide behind a 200.
"""

import re

import schemathesis

# The reference service's codes (contract §2): the only values clients can decode.
REFERENCE_CODES = {
    "OK",
    "InvalidArgument",
    "PermissionDenied",
    "NotFound",
    "AlreadyExists",
    "ResourceExhausted",
    "InternalServerError",
    "NoRoute",
    "RemoteServerError",
}


def envelope(response):
    try:
        body = response.json()
    except Exception:
        return None
    return body if isinstance(body, dict) and "code" in body else None


@schemathesis.check
def code_is_not_a_server_error(ctx, response, case):
    """`InternalServerError` in the envelope, whatever the HTTP status."""
    body = envelope(response)
    if body is not None and body["code"] == "InternalServerError":
        raise AssertionError(f"the envelope answers InternalServerError: {body}")


@schemathesis.check
def code_is_of_the_reference_set(ctx, response, case):
    """Every `code` is one the published clients can decode."""
    body = envelope(response)
    if body is not None and body["code"] not in REFERENCE_CODES:
        raise AssertionError(f"{body['code']!r} is not a code of the reference service")


@schemathesis.check
def enveloped_answers_are_http_200(ctx, response, case):
    """The default mode: an enveloped answer is HTTP 200 (only /healthz may say 503)."""
    body = envelope(response)
    if body is not None and response.status_code != 200 and case.path != "/healthz":
        raise AssertionError(f"HTTP {response.status_code} for {body['code']}")


def _whole_numbers_as_integers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers_as_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers_as_integers(item) for item in value]
    return value


@schemathesis.hook
def before_call(context, case, kwargs):
    """Two generated inputs that no schema can rule out, adjusted before they are sent.

    - A whole number spelled as a float (`4.0`): JSON Schema counts it as an integer, so
      schemathesis sends it for `integer` fields, but the contract's ids, roles and orders are
      integers and a number with a fraction is `invalid_argument` (docs/API-DESIGN.md, as the
      reference service refuses it). It is sent as the integer it spells.
    - `from_id` in a valid group update: the group's current parent, a precondition on the
      directory's state (contract §5.4: wrong is `invalid_argument`) that the document cannot
      state. A valid case leaves it out; invalid cases keep it.
    - `wait` on the event feed: a valid value holds the call up to 60 s when no event is
      pending, past the run's 10 s read timeout, and would make the run last hours; any case
      whose `wait` is valid asks without waiting (the long-poll is tested in
      tests/api/events.rs). That includes negative cases: their invalid part may be one the
      feed ignores, such as an unknown query parameter, and then their valid `wait` would
      hold the call. Invalid values are still sent.
    - `url` of a valid webhook: any URI the schema allows, but one that leads nowhere known
      would be refused (`invalid_argument`: it does not resolve) or, worse, delivered to; a
      valid case subscribes a closed port of 127.0.0.1 (the servers allow private targets).
    - `after` of a valid replay: it must not pass the team's last event, a state no schema
      can see; a valid case replays from 0.
    """
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if isinstance(case.body, (dict, list)):
        case.body = _whole_numbers_as_integers(case.body)
    if not positive and isinstance(case.query, dict):
        for name in _flags(case.operation):
            if name in case.query and case.query[name] is None:
                case.query[name] = "null"
    if positive and isinstance(case.body, dict) and case.method == "POST" \
            and case.path.endswith("/groups/{group_id}"):
        case.body.pop("from_id", None)
    if case.path.endswith("/events") and isinstance(case.query, dict) \
            and _valid_wait(case.query.get("wait")):
        case.query["wait"] = 0
    if positive and isinstance(case.body, dict) and "/webhooks" in case.path \
            and "url" in case.body:
        case.body["url"] = "http://127.0.0.1:9/hook"
    if positive and isinstance(case.body, dict) and case.path.endswith("/replay"):
        case.body["after"] = 0
    if positive and isinstance(case.body, dict) and case.path.endswith("/sync"):
        _snapshot_refers_to_itself(case.body)


def _valid_wait(value):
    """Whether the feed would accept `value` as its `wait`: a whole number of seconds, 0-60,
    in ASCII digits with an optional sign, spaces around it allowed (`Query::int`)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return False
    text = str(value).strip()
    return re.fullmatch(r"[+-]?[0-9]+", text) is not None and 0 <= int(text) <= 60


def _flags(operation):
    """The operation's query flags, its boolean query parameters (`Query::flag`): an empty value
    is `false`, so a negative case's null, which would be sent empty, is sent as the word `null`,
    which the flag refuses."""
    return {
        parameter.name
        for parameter in operation.query
        if parameter.definition.get("schema", {}).get("type") == "boolean"
    }


SNAPSHOT_FIELDS = {
    None: ("mode", "dry_run", "allow_mass_delete", "groups", "members"),
    "groups": ("remote_id", "name", "parent_remote_id", "order"),
    "members": ("openid", "nickname", "avatar", "role", "group_remote_ids"),
}


def _snapshot_refers_to_itself(snapshot):
    """A valid snapshot's references stay inside it (contract §8: a member's group, a group's
    parent, each remote id and openid once); the document cannot state that, so a valid case
    keeps the first group of each remote id and the first member of each openid, drops the
    parents, and keeps only the member groups the snapshot holds. It syncs in `upsert` mode:
    a `replace` deletes what the snapshot leaves out, which a group with children made through
    the API refuses (`group_not_empty`), a state of the directory no schema can see. Unknown fields go too: the
    snapshot reader skips them but still reads their numbers, and refuses one past the range
    of a double (`number out of range`), which no schema of an unknown field can state. Its
    members are plain members (role 4): an admin role (2 or 3) takes one of the org's admin
    seats, and the valid syncs before it may have taken the last (`exceed_user_limit`), another
    state no schema can see (admin seats are tested in tests/api)."""
    for unknown in set(snapshot) - set(SNAPSHOT_FIELDS[None]):
        del snapshot[unknown]
    snapshot["mode"] = "upsert"
    groups, seen = [], set()
    for group in snapshot.get("groups") or []:
        if isinstance(group, dict) and group.get("remote_id") not in seen:
            seen.add(group.get("remote_id"))
            group.pop("parent_remote_id", None)
            for unknown in set(group) - set(SNAPSHOT_FIELDS["groups"]):
                del group[unknown]
            groups.append(group)
    if isinstance(snapshot.get("groups"), list):
        snapshot["groups"] = groups
    members, openids = [], set()
    for member in snapshot.get("members") or []:
        if isinstance(member, dict) and member.get("openid") not in openids:
            openids.add(member.get("openid"))
            if isinstance(member.get("group_remote_ids"), list):
                member["group_remote_ids"] = [
                    remote_id for remote_id in member["group_remote_ids"] if remote_id in seen
                ]
            for unknown in set(member) - set(SNAPSHOT_FIELDS["members"]):
                del member[unknown]
            if member.get("role") in (2, 3):
                member["role"] = 4
            members.append(member)
    if isinstance(snapshot.get("members"), list):
        snapshot["members"] = members
