"""The Accounts page of `dispatcher dashboard`, inside rq-dashboard's own Flask app.

`/<instance>/view/accounts` (linked from rq-dashboard's navigation bar, as "Accounts") shows,
per provider, every account's slots used/maxJobs, its state (ok, cooling down, flagged, or not
eligible: a token that can no longer take work), the cooldown left, when its token expires, how
often it was refreshed and its error; and the waiting lines (the common line, and each account's
pinned line). It refreshes itself at the dashboard's poll interval (the same Autorefresh switch
as rq-dashboard's pages) by fetching the table again (`/<instance>/view/accounts/table`), and
`/<instance>/data/accounts.json` gives the same data to scripts.

The data is `dispatcher.overview.collect` (what `dispatcher status` prints), copied field by
field into what the page shows (`page_data`): account ids, counters, times and error texts, never
a credential, a token or a cookie (nothing here decrypts anything). The routes sit in the
dashboard's app, so its basic auth and `HostGuard` cover them like every other page.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from jinja2 import BaseLoader, TemplateNotFound  # the `dashboard` extra: imported by build_app only

from ..errors import StoreUnavailable
from .status import duration

NAV_ITEM = ('<li class="nav-item{% if active_tab == \'accounts\' %} active{% endif %}">'
            '<a href="{{ rq_url_prefix }}{{ current_instance }}/view/accounts" class="nav-link">Accounts</a></li>')

TABLE = """\
{% if error %}<p class="alert alert-danger">{{ error }}</p>{% else %}
<p class="small text-muted" id="accounts-snapshot">As of {{ data.time_utc }} UTC · {{ data.workers }} worker(s)</p>
<table class="table table-bordered table-sm accounts">
<thead class="thead-light"><tr><th>Account</th><th class="narrow">Slots used/maxJobs</th><th>State</th>
<th class="narrow">Cooldown</th><th>Token expires</th><th class="narrow">Refreshes</th>
<th class="narrow">Pinned waiting</th><th>Error</th></tr></thead>
{% for p in data.providers if p.accounts %}
<tbody data-provider="{{ p.name }}">
<tr class="table-secondary provider" id="provider-{{ p.name }}"><th colspan="8">{{ p.title }}
<small class="text-muted">{{ p.name }}</small> · slots {{ p.running }}/{{ p.slots }} in use ·
waiting line: <b>{{ p.waiting }}</b>{% if p.pinned_waiting %} · pinned lines: <b>{{ p.pinned_waiting }}</b>{% endif %}
{%- for l in p.lines %}{{ " (" if loop.first else ", " }}priority {{ l.priority }}{{ " " ~ l.tenant if l.tenant }}:
{{ l.waiting }}{{ ")" if loop.last }}{% endfor %}</th></tr>
{% for a in p.accounts %}
<tr data-account="{{ a.id }}" class="state-{{ a.state|replace(' ', '-') }}">
<td class="text-nowrap">{{ a.id }}</td><td class="narrow">{{ a.used }}/{{ a.maxJobs }}</td>
<td class="text-nowrap"><span class="badge {{ badges[a.state] }}">{{ a.state }}</span></td>
<td class="narrow">{{ duration(a.cooldown_seconds) if a.cooldown_seconds else "-" }}</td>
<td class="text-nowrap" title="{{ a.token_expires_utc or '' }}">{{ expiry(a.token_seconds_to_expiry) }}</td>
<td class="narrow">{{ a.refreshes }}</td><td class="narrow">{{ a.waiting_pinned }}</td>
<td>{{ a.error or "" }}{% if a.error_until_utc %}
<small class="text-muted">(until {{ a.error_until_utc }} UTC)</small>{% endif %}</td>
</tr>
{% endfor %}
</tbody>
{% endfor %}
</table>
{% set idle = data.providers|rejectattr("accounts")|map(attribute="title")|list %}
{% if idle %}<p class="text-muted small" id="no-accounts">No accounts configured: {{ idle|join(", ") }}.</p>{% endif %}
{% endif %}
"""

PAGE = """\
{% extends "rq_dashboard/base.html" %}
{% block content %}
<div class="section">
<h1>Accounts</h1>
<p class="fixed intro">Every provider's accounts: slots in use, state, cooldown, token expiry, refreshes
and errors, and the generations waiting for a slot.</p>
<div id="accounts">{% include "dispatcher/accounts_table.html" %}</div>
</div>
{% endblock %}
{% block content_scripts %}
(function($) {
    var url = {{ table_url|tojson }}, refreshes = 0;
    var refresh = function() {
        if (!AUTOREFRESH_FLAG) { setTimeout(refresh, POLL_INTERVAL); return; }
        $.get(url, function(html) { $('#accounts').html(html).attr('data-refreshes', ++refreshes); })
            .always(function() { setTimeout(refresh, POLL_INTERVAL); });
    };
    $(document).ready(function() { setTimeout(refresh, POLL_INTERVAL); });
})($);
{% endblock %}
"""

BADGES = {"ok": "badge-success", "cooling down": "badge-warning", "flagged": "badge-danger",
          "not eligible": "badge-secondary"}


def _utc(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def expiry(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"in {duration(seconds)}" if seconds >= 0 else f"expired {duration(-seconds)} ago"


def state_of(account: dict) -> str:
    if account.get("error"):
        return "flagged"
    if account.get("cooldown_seconds"):
        return "cooling down"
    return "ok" if account.get("eligible") else "not eligible"


def _account(a: dict, pinned: dict) -> dict:
    return {
        "id": a["id"], "used": a.get("executing", 0), "maxJobs": a.get("maxJobs"),
        "available": a.get("available", 0), "state": state_of(a),
        "cooldown_seconds": a.get("cooldown_seconds") or 0.0,
        "token_expires_at": a.get("token_expires_at"), "token_expires_utc": _utc(a.get("token_expires_at")),
        "token_seconds_to_expiry": a.get("token_seconds_to_expiry"),
        "refreshes": a.get("refreshes", 0), "error": a.get("error"),
        "error_until": a.get("error_until"), "error_until_utc": _utc(a.get("error_until")),
        "waiting_pinned": int(pinned.get(a["id"], 0) or 0),
    }


def page_data(collected: dict) -> dict:
    """What the page shows of `overview.collect`'s data, field by field (nothing else reaches it)."""
    out = {"time": collected["time"], "time_utc": _utc(collected["time"]), "workers": collected.get("workers", 0),
           "providers": []}
    for name, p in collected["providers"].items():
        pinned = p.get("pinned") or {}
        out["providers"].append({
            "name": name, "title": p.get("title", name), "slots": p.get("slots", 0), "running": p.get("running", 0),
            "waiting": p.get("waiting", 0), "pinned_waiting": sum(int(n or 0) for n in pinned.values()),
            "lines": [{key: line.get(key) for key in ("priority", "tenant", "waiting")}  # by priority and tenant
                      for line in p.get("lines") or () if line.get("waiting")],
            "accounts": [_account(a, pinned) for a in p.get("accounts", [])],
        })
    return out


class Templates(BaseLoader):
    """A Jinja loader: this page's templates, and rq-dashboard's navigation bar with an Accounts
    link added (read from the installed rq-dashboard, so its own links stay as they are)."""

    def __init__(self, navbar_file: Path):
        navbar = navbar_file.read_text(encoding="utf-8")
        if "</ul>" not in navbar:
            raise RuntimeError(f"rq-dashboard's {navbar_file.name} has no </ul> to add the Accounts link to")
        head, _, tail = navbar.partition("</ul>")
        self.sources = {"rq_dashboard/navbar.html": f"{head}    {NAV_ITEM}\n                </ul>{tail}",
                        "dispatcher/accounts.html": PAGE, "dispatcher/accounts_table.html": TABLE}

    def get_source(self, environment, template):
        if template not in self.sources:
            raise TemplateNotFound(template)
        return self.sources[template], None, lambda: True


def install(app, make_dispatcher: Callable, poll_interval_ms: int) -> None:
    """Add the Accounts page, its table and its JSON to rq-dashboard's app `app`.
    `make_dispatcher()`: the `Dispatcher` to read from, made at the first request that needs it."""
    import rq
    import rq_dashboard
    from flask import Blueprint, jsonify, render_template, url_for
    from rq_dashboard.version import VERSION as dashboard_version
    from rq_dashboard.web import escape_format_instance_list

    from ..overview import collect

    # looked up before the blueprints' templates: its navbar stands in for rq-dashboard's
    app.jinja_loader = Templates(Path(rq_dashboard.__file__).parent / "templates" / "rq_dashboard" / "navbar.html")
    pages = Blueprint("dispatcher_accounts", __name__)
    held: dict = {}

    def read() -> tuple[dict | None, str | None]:
        try:
            if "d" not in held:
                held["d"] = make_dispatcher()
            return page_data(collect(held["d"])), None
        except StoreUnavailable as exc:
            return None, exc.message

    def table_context(instance_number: int) -> dict:
        data, error = read()
        return dict(data=data, error=error, badges=BADGES, duration=duration, expiry=expiry,
                    table_url=url_for(".accounts_table", instance_number=instance_number))

    @pages.route("/<int:instance_number>/view/accounts")
    def accounts(instance_number: int):
        page = render_template(
            "dispatcher/accounts.html", current_instance=instance_number, active_tab="accounts",
            instance_list=escape_format_instance_list(app.config.get("RQ_DASHBOARD_REDIS_URL")),
            rq_url_prefix=url_for("rq_dashboard.queues_overview"), rq_dashboard_version=dashboard_version,
            rq_version=rq.VERSION, poll_interval=poll_interval_ms,
            deprecation_options_usage=app.config.get("DEPRECATED_OPTIONS", False), **table_context(instance_number))
        return page, 200, {"Cache-Control": "no-store"}

    @pages.route("/<int:instance_number>/view/accounts/table")
    def accounts_table(instance_number: int):
        context = table_context(instance_number)
        status = 503 if context["error"] else 200
        return render_template("dispatcher/accounts_table.html", **context), status, {"Cache-Control": "no-store"}

    @pages.route("/<int:instance_number>/data/accounts.json")
    def accounts_json(instance_number: int):
        data, error = read()
        if error:
            return jsonify(error=error), 503, {"Cache-Control": "no-store"}
        return jsonify(data), 200, {"Cache-Control": "no-store"}

    app.register_blueprint(pages)
