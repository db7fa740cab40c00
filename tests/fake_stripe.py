"""A fake of the part of Stripe's HTTP API the gateway uses, on loopback, plus webhook helpers.

stripe-python talks to it as to api.stripe.com (STRIPE_API_BASE): form-encoded requests, JSON
answers in Stripe's shapes, Stripe-shaped errors. It keeps what it was asked in `requests`, so
tests can check what was sent (and that no secret travelled anywhere else).

Its "hosted Checkout page" (GET /pay/<session>) marks the session paid, delivers a signed
`checkout.session.completed` to `webhook_url` when one is set, and redirects to the success URL:
enough for a browser to top up end to end.

Automatic top-ups: a session created with `setup_future_usage=off_session` gets a customer
(`cus_...`, or the one it was given) and, once paid, a saved card (`pm_...`, expandable with its
brand and last4). POST /v1/payment_intents (confirm, off_session) answers a succeeded intent, or
a 402 card error when `decline_next` is set ("card_declined", "authentication_required").

Events are built in Stripe's shapes (`event`, `session_event`, `charge_refunded`, `dispute`,
`intent_event`, `session_intent_event`) and signed with the real `stripe.WebhookSignature.generate_signature_header` (`signed`).
"""
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import requests
import stripe

from tests.fake_upstream import POLL

WEBHOOK_SECRET = "whsec_test_fake_secret_for_the_suite"
SECRET_KEY = "sk_test_fake_key_for_the_suite_0000000000"


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def parse_form(body: str) -> dict:
    """Stripe's nested form encoding (a[b][0][c]=v) back into dicts and lists."""
    root: dict = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                if part == "" and isinstance(node, list):
                    node.append(value)
                elif isinstance(node, list):
                    node.append(value)
                else:
                    node[part] = value
                break
            nxt = parts[i + 1]
            container = [] if nxt.isdigit() or nxt == "" else {}
            if isinstance(node, list):
                index = int(part)
                while len(node) <= index:
                    node.append(type(container)())
                node = node[index]
            else:
                node = node.setdefault(part, container)
    return root


class FakeStripe:
    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.idempotent: dict[str, dict] = {}
        self.webhook_url: Optional[str] = None
        self.webhook_secret = WEBHOOK_SECRET
        self.fail_refunds = False  # answer refunds with a Stripe error
        self.fail_checkout = False
        self.intents: dict[str, dict] = {}
        self.payment_methods: dict[str, dict] = {}
        self.decline_next: Optional[str] = None  # the next off-session charge fails with this card error code
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # --- objects ---------------------------------------------------------------------------

    def create_session(self, params: dict) -> dict:
        item = params["line_items"][0]
        amount = int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
        session_id = _id("cs")
        session = {
            "id": session_id, "object": "checkout.session", "mode": params.get("mode"),
            "amount_total": amount, "amount_subtotal": amount, "currency": item["price_data"]["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "customer_email": params.get("customer_email"),
            "customer_details": {"email": params.get("customer_email")},
            "metadata": params.get("metadata", {}), "payment_method_types": params.get("payment_method_types", []),
            "payment_intent": None, "invoice": None, "payment_status": "unpaid", "status": "open",
            "success_url": params.get("success_url"), "cancel_url": params.get("cancel_url"),
            "url": f"{self.url}/pay/{session_id}", "livemode": False, "created": int(time.time()),
            "customer": params.get("customer") or (_id("cus") if params.get("customer_creation") == "always" else None),
            "_params": params,
        }
        self.sessions[session_id] = session
        return session

    def pay(self, session_id: str, method: str = "card", *, paid: bool = True,
            fingerprint: Optional[str] = None) -> dict:
        """Settle a session as Stripe would once the payer finished (or started, for delayed methods).

        A card payment carries Stripe's card `fingerprint` (one card, one fingerprint on every account);
        a fresh one unless given."""
        with self.lock:
            session = self.sessions[session_id]
            if session["payment_intent"] is None:
                fingerprint = fingerprint or _id("fp")
                session["payment_intent"] = _id("pi")
                session["invoice"] = _id("in")
                session["_charge"] = {
                    "id": _id("ch"), "object": "charge", "amount": session["amount_total"],
                    "amount_refunded": 0, "currency": session["currency"], "refunded": False, "disputed": False,
                    "payment_intent": session["payment_intent"], "metadata": session["metadata"],
                    "payment_method_details": ({"type": method, "card": {"fingerprint": fingerprint}}
                                               if method == "card" else {"type": method}),
                    "receipt_url": f"https://pay.stripe.com/receipts/{session_id}",
                }
                intent_data = session["_params"].get("payment_intent_data") or {}
                if intent_data.get("setup_future_usage") == "off_session" and method == "card":
                    card = {"id": _id("pm"), "object": "payment_method", "type": "card",
                            "customer": session["customer"],
                            "card": {"brand": "visa", "last4": "4242", "fingerprint": fingerprint}}
                    self.payment_methods[card["id"]] = card
                    session["_payment_method"] = card
            session["status"] = "complete"
            session["payment_status"] = "paid" if paid else "unpaid"
            return public(session)

    def charge_of(self, session_id: str) -> dict:
        return self.sessions[session_id]["_charge"]

    def session_by_intent(self, payment_intent: str) -> Optional[dict]:
        return next((s for s in self.sessions.values() if s["payment_intent"] == payment_intent), None)

    def expanded(self, session: dict) -> dict:
        out = public(session)
        if session["payment_intent"]:
            out["payment_intent"] = {"id": session["payment_intent"], "object": "payment_intent",
                                     "latest_charge": session["_charge"],
                                     "payment_method": session.get("_payment_method")}
            out["invoice"] = {"id": session["invoice"], "object": "invoice",
                              "hosted_invoice_url": f"https://invoice.stripe.com/i/{session['invoice']}"}
        return out

    def refund(self, params: dict) -> tuple[int, dict]:
        if self.fail_refunds:
            return 400, error("This charge cannot be refunded right now.", code="charge_not_refundable")
        session = self.session_by_intent(params.get("payment_intent", ""))
        if session is None:
            return 404, error(f"No such payment_intent: '{params.get('payment_intent')}'", code="resource_missing")
        charge = session["_charge"]
        amount = int(params.get("amount", charge["amount"] - charge["amount_refunded"]))
        if amount <= 0 or charge["amount_refunded"] + amount > charge["amount"]:
            return 400, error(f"Refund amount (${amount / 100:.2f}) is greater than unrefunded amount on charge "
                              f"(${(charge['amount'] - charge['amount_refunded']) / 100:.2f})",
                              code="amount_too_large")
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        refund = {"id": _id("re"), "object": "refund", "amount": amount, "charge": charge["id"],
                  "payment_intent": session["payment_intent"], "currency": charge["currency"],
                  "status": "succeeded", "metadata": params.get("metadata", {}), "created": int(time.time())}
        self.refunds[refund["id"]] = refund
        return 200, refund

    def charge_card(self, params: dict) -> tuple[int, dict]:
        """An off-session PaymentIntent, confirmed at once: succeeded, or a card error (`decline_next`)."""
        intent = {"id": _id("pi"), "object": "payment_intent", "amount": int(params["amount"]),
                  "amount_received": 0, "currency": params.get("currency"), "customer": params.get("customer"),
                  "payment_method": params.get("payment_method"), "metadata": params.get("metadata", {}),
                  "description": params.get("description"), "status": "succeeded", "latest_charge": None,
                  "last_payment_error": None, "created": int(time.time())}
        known = self.payment_methods.get(params.get("payment_method", ""))
        if known is None or known["customer"] != params.get("customer"):
            return 400, error(f"No such PaymentMethod: '{params.get('payment_method')}'", code="resource_missing")
        code, self.decline_next = self.decline_next, None
        if code:
            message = {"authentication_required": "Your card was declined. This transaction requires "
                                                  "authentication."}.get(code, "Your card was declined.")
            intent.update(status="requires_payment_method",
                          last_payment_error={"type": "card_error", "code": code, "message": message})
            self.intents[intent["id"]] = intent
            return 402, {"error": {"type": "card_error", "code": code, "message": message,
                                   "decline_code": "generic_decline", "payment_intent": intent}}
        intent.update(amount_received=intent["amount"], latest_charge=_id("ch"))
        self.intents[intent["id"]] = intent
        return 200, intent

    def charges(self) -> list[dict]:
        """The off-session charges asked for (POST /v1/payment_intents), as sent."""
        return [parse_form(r["body"]) for r in self.requests
                if r["method"] == "POST" and r["path"] == "/v1/payment_intents"]

    # --- events ------------------------------------------------------------------------------

    def intent_event(self, event_type: str, intent_id: str) -> dict:
        """`payment_intent.succeeded` or `payment_intent.payment_failed` for an off-session charge."""
        return event(event_type, dict(self.intents[intent_id]))

    def session_intent_event(self, session_id: str) -> dict:
        """The `payment_intent.succeeded` Stripe also sends for a paid Checkout Session's intent."""
        session = self.sessions[session_id]
        amount = session["amount_total"]
        return event("payment_intent.succeeded", {
            "id": session["payment_intent"], "object": "payment_intent", "amount": amount, "amount_received": amount,
            "currency": session["currency"], "status": "succeeded", "latest_charge": session["_charge"]["id"],
            "metadata": (session["_params"].get("payment_intent_data") or {}).get("metadata", {})})

    def session_event(self, event_type: str, session_id: str) -> dict:
        return event(event_type, public(self.sessions[session_id]))

    def charge_refunded(self, session_id: str, refund_cents: Optional[int] = None) -> dict:
        """Refund `refund_cents` (default: the rest) as from Stripe's dashboard; the charge.refunded event."""
        charge = self.charge_of(session_id)
        amount = charge["amount"] - charge["amount_refunded"] if refund_cents is None else refund_cents
        status, refund = self.refund({"payment_intent": charge["payment_intent"], "amount": amount})
        assert status == 200, refund
        return event("charge.refunded", dict(charge, refunds={"object": "list", "data": [refund]}))

    def dispute(self, session_id: str, status: str = "needs_response", *, dispute_id: Optional[str] = None,
                amount_cents: Optional[int] = None) -> dict:
        charge = self.charge_of(session_id)
        charge["disputed"] = True
        obj = {"id": dispute_id or _id("dp"), "object": "dispute", "amount": amount_cents or charge["amount"],
               "charge": charge["id"], "payment_intent": charge["payment_intent"], "currency": charge["currency"],
               "reason": "fraudulent", "status": status, "created": int(time.time())}
        kind = "charge.dispute.created" if status == "needs_response" else "charge.dispute.closed"
        return event(kind, obj)

    # --- HTTP --------------------------------------------------------------------------------

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, body: dict, headers: Optional[dict] = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", _id("req"))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _redirect(self, location: str):
                self.send_response(303)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _record(self, body: str):
                fake.requests.append({"method": self.command, "path": self.path, "body": body,
                                      "headers": dict(self.headers.items())})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                self._record(body)
                if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                    return self._send(401, error("Invalid API Key provided", type_="invalid_request_error"))
                params = parse_form(body)
                key = self.headers.get("Idempotency-Key")
                if key and (self.path, key) in fake.idempotent:
                    return self._send(200, fake.idempotent[(self.path, key)])
                if self.path == "/v1/checkout/sessions":
                    if fake.fail_checkout:
                        return self._send(500, error("Something went wrong on Stripe's end.", type_="api_error"))
                    with fake.lock:
                        out = public(fake.create_session(params))
                    status = 200
                elif self.path == "/v1/refunds":
                    with fake.lock:
                        status, out = fake.refund(params)
                elif self.path == "/v1/payment_intents":
                    with fake.lock:
                        status, out = fake.charge_card(params)
                elif self.path.startswith("/v1/payment_methods/") and self.path.endswith("/detach"):
                    with fake.lock:
                        card = fake.payment_methods.get(self.path.split("/")[3])
                        if card is None:
                            return self._send(404, error("No such PaymentMethod", code="resource_missing"))
                        card["customer"] = None
                        status, out = 200, card
                else:
                    return self._send(404, error(f"Unrecognized request URL (POST: {self.path})"))
                if key and status == 200:
                    fake.idempotent[(self.path, key)] = out
                return self._send(status, out)

            def do_GET(self):
                self._record("")
                path, _, query = self.path.partition("?")
                if path.startswith("/pay/"):
                    return self._pay(path[len("/pay/"):])
                if self.headers.get("Authorization") != f"Bearer {SECRET_KEY}":
                    return self._send(401, error("Invalid API Key provided"))
                if path.startswith("/v1/checkout/sessions/"):
                    session = fake.sessions.get(path.rsplit("/", 1)[1])
                    if session is None:
                        return self._send(404, error("No such checkout.session", code="resource_missing"))
                    return self._send(200, fake.expanded(session) if "expand" in query else public(session))
                if path.startswith("/v1/payment_intents/"):
                    intent = fake.intents.get(path.rsplit("/", 1)[1])
                    if intent is None:
                        return self._send(404, error("No such payment_intent", code="resource_missing"))
                    return self._send(200, intent)
                return self._send(404, error(f"Unrecognized request URL (GET: {path})"))

            def _pay(self, rest: str):
                session_id, _, action = rest.partition("/")
                session = fake.sessions.get(session_id)
                if session is None:
                    return self._send(404, error("No such checkout.session"))
                if action == "cancel":
                    return self._redirect(session["cancel_url"])
                fake.pay(session_id)
                if fake.webhook_url:
                    deliver(fake.webhook_url, fake.session_event("checkout.session.completed", session_id),
                            fake.webhook_secret)
                return self._redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))

        return Handler


def public(session: dict) -> dict:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def error(message: str, *, type_: str = "invalid_request_error", code: Optional[str] = None) -> dict:
    body = {"type": type_, "message": message}
    if code:
        body["code"] = code
    return {"error": body}


def event(event_type: str, obj: dict, *, event_id: Optional[str] = None, created: Optional[int] = None) -> dict:
    return {"id": event_id or _id("evt"), "object": "event", "api_version": "2025-10-29.clover",
            "created": created or int(time.time()), "type": event_type, "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "data": {"object": obj}}


def signed(evt: dict, secret: str = WEBHOOK_SECRET, *, timestamp: Optional[int] = None) -> tuple[bytes, str]:
    """The body Stripe would send and its Stripe-Signature header."""
    payload = json.dumps(evt)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp or int(time.time()))
    return payload.encode(), header


def deliver(url: str, evt: dict, secret: str = WEBHOOK_SECRET) -> requests.Response:
    payload, header = signed(evt, secret)
    return requests.post(url, data=payload, headers={"Stripe-Signature": header,
                                                     "Content-Type": "application/json"}, timeout=60)
