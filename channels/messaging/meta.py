"""What Meta's two messaging platforms (WhatsApp Cloud API, Messenger) share: an app secret
that signs webhooks (``X-Hub-Signature-256``), a bearer token for the Graph API, and the
subscription handshake's verify token."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from channels.messaging.signatures import Verdict, check_hub_signature


class MetaApp:
    def __init__(
        self, app_secret: SecretStr, token: SecretStr, verify_token: SecretStr, graph_url: str
    ) -> None:
        self._secret = app_secret
        self._token = token
        self.verify_token: SecretStr | None = verify_token
        self._graph = graph_url.rstrip("/")

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> Verdict:
        return check_hub_signature(
            self._secret.get_secret_value(), body, headers.get("x-hub-signature-256")
        )

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token.get_secret_value()}"}
