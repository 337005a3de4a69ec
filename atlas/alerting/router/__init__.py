"""The alert router: Alertmanager webhooks in, email / webhook / Slack out, through a durable outbox.

    payload.py   webhook v4 validation and the normalised notification (+ its dedupe key)
    routing.py   which alerts of a notification go to which channel (severity, send_resolved, channels)
    render.py    Jinja2 templates (packaged, overridable from CONFIG_DIR/templates/router/)
    channels/    one `send` per channel kind: email (smtplib), webhook and Slack (http.client)
    sender.py    drains the outbox per channel with capped, jittered backoff
    app.py       the HTTP face: POST /v1/alertmanager, health, metrics, audit trail
    process.py   `atlas alert-router` and the router threads of `atlas up`

The outbox itself (SQLite, WAL, synchronous=FULL) is atlas.store.outbox.
"""
