"""The dashboard's pages under ``/dashboard``: thin routes over the same services as the API.

Every route parses the form or query, calls a service method with plain values, and
renders a template. The signed-in viewer's account scopes every read and write exactly as
an API key does; writes need the key's ``write`` scope. Forms are validated by the API's
own schemas (``parse_model``), so the messages match the API's word for word.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers.response import Response as WerkzeugResponse

from gateway.api import get_services
from gateway.api.schemas import TrunkCreate, TrunkUpdate, parse_model
from gateway.api.trunks import trunk_out
from gateway.dashboard import auth
from gateway.dashboard.auth import Viewer
from gateway.dashboard.forms import DIALECTS, PROVIDER_LABELS, connection_body, sticky_values
from gateway.dashboard.records import DashboardRecords
from gateway.dashboard.views import blame_label, millis, seconds, tone, when
from gateway.services.api_keys import SCOPES
from gateway.services.calls import TrunkCallStats
from gateway.services.errors import Forbidden, InvalidRequest, ServiceError
from gateway.services.trunks import TrunkState

logger = logging.getLogger(__name__)

dashboard = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

_PUBLIC = {"dashboard.sign_in_form", "dashboard.sign_in", "dashboard.static"}
_JSON_ENDPOINTS = {"dashboard.calls_feed", "dashboard.generate_credentials"}
_MAX_TRUNKS_SHOWN = 500
_SECURITY_HEADERS = {
    # Everything is served by us: no CDN, no inline script or style (CSP Level 3).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show one-time secrets: never keep them in a cache.
    "Cache-Control": "no-store",
}
Page = str | Response | WerkzeugResponse | tuple[str, int] | tuple[Response, int]


def viewer() -> Viewer:
    """The signed-in viewer (the guard below has put it on ``g``)."""
    who = g.get("viewer")
    if not isinstance(who, Viewer):
        raise Forbidden("unauthorized", "Sign in first")
    return who


def writer() -> Viewer:
    """The viewer, if its key may change things; else a clear 403."""
    who = viewer()
    if not who.can_write:
        raise Forbidden(
            "insufficient_scope",
            "This API key is read-only: sign in with a key that has the write scope "
            "to change anything.",
        )
    return who


def records() -> DashboardRecords:
    """Call records and analytics of the running services."""
    return DashboardRecords(get_services())


def _wants_json() -> bool:
    return request.endpoint in _JSON_ENDPOINTS


def _safe_next(target: str | None) -> str:
    """Only redirect back into the dashboard (never to another site: ``//evil``)."""
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return url_for("dashboard.connections")


@dashboard.before_request
async def guard() -> Response | WerkzeugResponse | None:
    """HTTPS policy, CSRF on every state-changing request, then the session."""
    services = get_services()
    if services.settings.require_https and not auth.came_over_https(request, services.settings):
        raise InvalidRequest("https_required", "The dashboard is only served over HTTPS")
    if auth.is_unsafe(request.method):
        form = await request.form
        auth.check_csrf(form.get(auth.CSRF_FIELD) or request.headers.get(auth.CSRF_HEADER))
    if request.endpoint in _PUBLIC:
        return None
    who = await auth.current_viewer(services)
    if who is None:
        if _wants_json():
            response = jsonify({"error": {"code": "unauthorized", "message": "Sign in again"}})
            response.status_code = 401
            return response
        return redirect(url_for("dashboard.sign_in_form", next=request.full_path.rstrip("?")))
    g.viewer = who
    return None


@dashboard.after_request
async def security_headers(response: Response) -> Response:
    """CSP and friends on every dashboard response."""
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@dashboard.errorhandler(ServiceError)
async def service_error(error: ServiceError) -> tuple[Response | str, int]:
    """Domain errors as a page (or JSON for the dashboard's own fetches)."""
    if _wants_json() or request.headers.get(auth.CSRF_HEADER):
        return jsonify(error.to_dict()), error.status
    page = await render_template("dashboard/error.html", error=error)
    return page, error.status


@dashboard.app_template_filter("when")
def _when_filter(value: Any) -> str:
    return when(value)


@dashboard.context_processor
async def common() -> dict[str, Any]:
    """What every template may use."""
    return {
        "viewer": g.get("viewer"),
        "csrf_token": auth.csrf_token(),
        "csrf_field": auth.CSRF_FIELD,
        "providers": PROVIDER_LABELS,
        "dialects": DIALECTS,
        "tone": tone,
        "blame_label": blame_label,
        "millis": millis,
        "seconds": seconds,
    }


# --- signing in and out ---


@dashboard.get("/")
async def home() -> WerkzeugResponse:
    """The dashboard opens on the connections."""
    return redirect(url_for("dashboard.connections"))


@dashboard.get("/sign-in")
async def sign_in_form() -> Page:
    """The sign-in form."""
    return await render_template("dashboard/sign_in.html", next=request.args.get("next", ""))


@dashboard.post("/sign-in")
async def sign_in() -> Page:
    """Check the API key; start a session."""
    services = get_services()
    form = await request.form
    target = form.get("next", "")
    decision = await services.rate_limiter.hit(f"dashboard-sign-in:{request.remote_addr}")
    if not decision.allowed:
        page = await render_template(
            "dashboard/sign_in.html", error="Too many attempts; wait a minute.", next=target
        )
        return page, 429
    try:
        await auth.sign_in(services, form.get("api_key", ""))
    except ServiceError:
        page = await render_template(
            "dashboard/sign_in.html",
            error="That API key is not valid or has been revoked.",
            next=target,
        )
        return page, 401
    return redirect(_safe_next(target))


@dashboard.post("/sign-out")
async def sign_out() -> WerkzeugResponse:
    """End the session."""
    auth.sign_out()
    return redirect(url_for("dashboard.sign_in_form"))


# --- connections ---


def _view(state: TrunkState, stats: TrunkCallStats | None = None) -> dict[str, Any]:
    """The API's view of a trunk (the same masking), plus what the cards show."""
    settings = get_services().settings
    view = trunk_out(state, settings.sip_domain, settings.http_base_url, stats)
    view["provider_label"] = PROVIDER_LABELS.get(view["ai_provider"], view["ai_provider"])
    config = view.get("provider_config") or {}
    view["model_label"] = (
        config.get("model") or config.get("agent_id") or view.get("custom_endpoint")
    )
    view["webhook_links"] = _webhook_links(view.get("webhook_urls"))
    view["last_call"] = when(view.get("last_call_at"))
    view["avg_latency_label"] = millis(view.get("avg_latency"))
    return view


def _webhook_links(raw: Any) -> list[tuple[str, str]]:
    """The carrier webhook URLs of a trunk view (``webhook_urls``), flattened for display."""
    out: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        return out
    for carrier, value in raw.items():
        if isinstance(value, str):
            out.append((str(carrier).replace("_", " ").capitalize(), value))
        elif isinstance(value, dict):
            for name, url in value.items():
                if isinstance(url, str):
                    label = f"{str(carrier).capitalize()} {str(name).replace('_', ' ')}"
                    out.append((label, url))
    return out


async def _all_trunks(account_id: str) -> list[TrunkState]:
    services = get_services()
    found: list[TrunkState] = []
    cursor: str | None = None
    while len(found) < _MAX_TRUNKS_SHOWN:
        page = await services.trunks.list(account_id, limit=100, cursor=cursor)
        found.extend(page.items)
        if not page.has_more or page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found


@dashboard.get("/connections")
async def connections() -> Page:
    """One card per trunk, with its call figures."""
    who = viewer()
    states = await _all_trunks(who.account_id)
    stats = await records().trunk_stats([s.trunk.id for s in states])
    cards = [_view(state, stats.get(state.trunk.id)) for state in states]
    return await render_template("dashboard/connections.html", cards=cards)


async def _connection_form(
    *, values: dict[str, str], error: str | None = None, trunk: dict[str, Any] | None = None
) -> str:
    return await render_template(
        "dashboard/connection_form.html", values=values, error=error, trunk=trunk
    )


@dashboard.get("/connections/new")
async def new_connection() -> Page:
    """The create-connection form."""
    writer()
    return await _connection_form(values={"ai_provider": "openai"})


@dashboard.post("/connections/new")
async def create_connection() -> Page:
    """Create a trunk; reveal its SIP password once. "Generate credentials" without JS too."""
    who = writer()
    services = get_services()
    form = await request.form
    values = sticky_values(form.to_dict())
    if "generate" in form:
        values["sip_username"], values["sip_password"] = services.trunks.generate_credentials()
        return await _connection_form(values=values)
    try:
        body = connection_body(form.to_dict(), editing=False)
        changes = parse_model(TrunkCreate, body).model_dump(exclude_unset=True)
        state = await services.trunks.create(who.account_id, changes)
    except ServiceError as error:
        return await _connection_form(values=values, error=error.message), error.status
    logger.info("dashboard: trunk %s created by key %s", state.trunk.id, who.key_id)
    return await render_template(
        "dashboard/reveal.html", trunk=_view(state), password=state.sip_password, created=True
    )


@dashboard.post("/credentials/generate")
async def generate_credentials() -> Response:
    """A random SIP username and password pair, for the form's button (JSON)."""
    writer()
    username, password = get_services().trunks.generate_credentials()
    return jsonify({"sip_username": username, "sip_password": password})


@dashboard.get("/connections/<trunk_id>")
async def connection(trunk_id: str) -> Page:
    """One trunk: its addresses ready to copy, and its actions."""
    who = viewer()
    state = await get_services().trunks.get(who.account_id, trunk_id)
    stats = (await records().trunk_stats([trunk_id])).get(trunk_id)
    view = _view(state, stats)
    return await render_template("dashboard/connection.html", trunk=view)


def _edit_values(view: dict[str, Any]) -> dict[str, str]:
    config = view.get("provider_config") or {}
    return {
        "name": view["name"],
        "ai_provider": view["ai_provider"],
        "openai_model": config.get("model") or "",
        "openai_voice": config.get("voice") or "",
        "system_prompt": view.get("system_prompt") or "",
        "custom_system_prompt": view.get("system_prompt") or "",
        "elevenlabs_agent_id": config.get("agent_id") or "",
        "elevenlabs_voice_id": config.get("voice_id") or "",
        "custom_endpoint": view.get("custom_endpoint") or "",
        "custom_dialect": config.get("dialect") or "",
        "inbound_numbers": "\n".join(view.get("inbound_numbers") or []),
        "webhook_url": view.get("webhook_url") or "",
    }


@dashboard.get("/connections/<trunk_id>/edit")
async def edit_connection_form(trunk_id: str) -> Page:
    """The edit form; secrets are never shown (blank keeps them)."""
    who = writer()
    view = _view(await get_services().trunks.get(who.account_id, trunk_id))
    return await _connection_form(values=_edit_values(view), trunk=view)


@dashboard.post("/connections/<trunk_id>/edit")
async def edit_connection(trunk_id: str) -> Page:
    """Apply the edit form (changes apply to new calls)."""
    who = writer()
    services = get_services()
    view = _view(await services.trunks.get(who.account_id, trunk_id))
    form = await request.form
    try:
        body = connection_body(form.to_dict(), editing=True)
        changes = parse_model(TrunkUpdate, body).model_dump(exclude_unset=True)
        await services.trunks.update(who.account_id, trunk_id, changes)
    except ServiceError as error:
        values = sticky_values(form.to_dict())
        page = await _connection_form(values=values, error=error.message, trunk=view)
        return page, error.status
    await _flash("Connection saved. Changes apply to new calls.")
    return redirect(url_for("dashboard.connection", trunk_id=trunk_id))


@dashboard.post("/connections/<trunk_id>/activate")
async def activate(trunk_id: str) -> WerkzeugResponse:
    """Accept calls again."""
    who = writer()
    await get_services().trunks.set_active(who.account_id, trunk_id, True)
    await _flash("Connection activated.")
    return redirect(_safe_next((await request.form).get("next")))


@dashboard.post("/connections/<trunk_id>/deactivate")
async def deactivate(trunk_id: str) -> WerkzeugResponse:
    """Refuse new calls until activated."""
    who = writer()
    await get_services().trunks.set_active(who.account_id, trunk_id, False)
    await _flash("Connection deactivated: new calls are refused.")
    return redirect(_safe_next((await request.form).get("next")))


@dashboard.post("/connections/<trunk_id>/rotate")
async def rotate(trunk_id: str) -> Page:
    """A new SIP password, revealed once; the old one stops working at once."""
    who = writer()
    state = await get_services().trunks.rotate_password(who.account_id, trunk_id)
    logger.info("dashboard: trunk %s password rotated by key %s", trunk_id, who.key_id)
    return await render_template(
        "dashboard/reveal.html", trunk=_view(state), password=state.sip_password, created=False
    )


@dashboard.get("/connections/<trunk_id>/delete")
async def delete_confirm(trunk_id: str) -> Page:
    """The confirmation page (what the dialog shows, for browsers without JavaScript)."""
    who = writer()
    view = _view(await get_services().trunks.get(who.account_id, trunk_id))
    return await render_template("dashboard/delete.html", trunk=view)


@dashboard.post("/connections/<trunk_id>/delete")
async def delete(trunk_id: str) -> WerkzeugResponse:
    """Delete the trunk (its call records stay)."""
    who = writer()
    services = get_services()
    state = await services.trunks.get(who.account_id, trunk_id)
    await services.trunks.delete(who.account_id, trunk_id)
    logger.info("dashboard: trunk %s deleted by key %s", trunk_id, who.key_id)
    await _flash(f"Connection {state.trunk.name} deleted.")
    return redirect(url_for("dashboard.connections"))


async def _flash(message: str) -> None:
    """A one-line notice on the next page (kept in the session: never a secret)."""
    await flash(message)


# --- call logs ---


def _parse_date(raw: str | None, name: str) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest("invalid_parameter", f"{name} must be a date (YYYY-MM-DD)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _call_filters(args: MultiDict[str, str]) -> dict[str, Any]:
    start_from = _parse_date(args.get("from"), "from")
    start_to = _parse_date(args.get("to"), "to")
    if start_to is not None and len(args.get("to", "")) <= 10:
        start_to += timedelta(days=1)  # a date "to" includes that whole day
    return {
        "trunk_id": args.get("trunk") or None,
        "status": args.get("status") or None,
        "start_from": start_from,
        "start_to": start_to,
    }


@dashboard.get("/calls")
async def calls() -> Page:
    """The latest calls, refreshing live, with filters."""
    who = viewer()
    filters = _call_filters(request.args)
    page = await records().calls(who.account_id, **filters)
    trunks = await _all_trunks(who.account_id)
    return await render_template(
        "dashboard/calls.html",
        page=page,
        trunks=[(s.trunk.id, s.trunk.name) for s in trunks],
        statuses=records().statuses,
        args=request.args,
    )


@dashboard.get("/calls/feed")
async def calls_feed() -> Response:
    """The call-log rows for the live refresh: rendered rows and the total."""
    who = viewer()
    page = await records().calls(who.account_id, **_call_filters(request.args))
    rows = await render_template("dashboard/_call_rows.html", page=page)
    return jsonify({"rows_html": rows, "total": page.total, "count": len(page.rows)})


@dashboard.get("/calls/<call_id>")
async def call(call_id: str) -> Page:
    """One call: its record, timeline and per-turn latency chart."""
    who = viewer()
    detail = await records().call(who.account_id, call_id)
    return await render_template("dashboard/call.html", call=detail)


# --- analytics ---


@dashboard.get("/analytics")
async def analytics() -> Page:
    """Latency, concurrency, volume and blame over 24, 48 or 72 hours."""
    who = viewer()
    raw = request.args.get("hours", "24")
    hours = int(raw) if raw in ("24", "48", "72") else 24
    overview = await records().analytics(who.account_id, hours)
    return await render_template("dashboard/analytics.html", overview=overview, hours=hours)


# --- API keys and developer tools ---


async def _keys_page(created: Any = None, error: str | None = None) -> str:
    who = viewer()
    keys = await get_services().api_keys.list(who.account_id)
    return await render_template(
        "dashboard/developers.html", keys=keys, created=created, error=error, scopes=SCOPES
    )


@dashboard.get("/developers")
async def developers() -> Page:
    """API keys (prefix, scopes, created, last used), and the OpenAPI document."""
    return await _keys_page()


@dashboard.post("/developers/keys")
async def create_key() -> Page:
    """A new key of the viewer's account, shown once."""
    who = writer()
    form = await request.form
    scopes = [s for s in form.getlist("scopes") if s]
    if not scopes:
        return await _keys_page(error="Choose at least one scope."), 400
    try:
        created = await get_services().api_keys.create(
            who.account_name, form.get("name", ""), scopes
        )
    except ServiceError as error:
        return await _keys_page(error=error.message), error.status
    logger.info("dashboard: key %s created by key %s", created.key.id, who.key_id)
    return await _keys_page(created=created)


@dashboard.post("/developers/keys/<key_id>/revoke")
async def revoke_key(key_id: str) -> WerkzeugResponse:
    """Revoke a key of the account at once (revoking your own key signs you out)."""
    who = writer()
    await get_services().api_keys.revoke(key_id, who.account_id)
    logger.info("dashboard: key %s revoked by key %s", key_id, who.key_id)
    if key_id == who.key_id:
        auth.sign_out()
        return redirect(url_for("dashboard.sign_in_form"))
    await _flash("API key revoked.")
    return redirect(url_for("dashboard.developers"))
