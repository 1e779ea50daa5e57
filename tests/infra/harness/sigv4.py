"""A SigV4 check for the fault proxy's gate: botocore signs the same request again and the signatures must match.

    check = SigV4Check(AwsKeys("AKID", "secret", "token"), region="eu-west-1", service="es")
    proxy = FaultProxy(opensearch.url, gate=check).start()   # a bad signature is answered 403, like AWS

The request is rebuilt from what arrived (method, path and query, the headers the client
listed as signed, the body) and signed by botocore at the instant the client claimed (X-Amz-Date).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.infra.harness.faultproxy import Seen

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class AwsKeys:
    """Fake credentials, as the AWS_ environment variables give them."""

    access_key: str
    secret_key: str
    token: str | None = None


class SigV4Check:
    """Callable gate: None when the request's signature is botocore's own, else why not."""

    def __init__(self, keys: AwsKeys, region: str, service: str) -> None:
        self.keys, self.region, self.service = keys, region, service
        self.checked = 0

    def __call__(self, seen: Seen) -> str | None:
        found = _AUTHORIZATION.match(seen.headers.get("authorization", ""))
        if found is None:
            return "missing or malformed SigV4 Authorization header"
        scope = (found["key"], found["region"], found["service"])
        if scope != (self.keys.access_key, self.region, self.service):
            return f"credential scope {scope} is not {(self.keys.access_key, self.region, self.service)}"
        signed = found["signed"].split(";")
        for needed in ("host", "x-amz-date", "x-amz-content-sha256"):
            if needed not in signed:
                return f"{needed} is not signed"
        if self.keys.token is not None and seen.headers.get("x-amz-security-token") != self.keys.token:
            return "the session token is missing"
        if self.keys.token is not None and "x-amz-security-token" not in signed:
            return "the session token is not signed"
        if seen.headers["x-amz-content-sha256"] != hashlib.sha256(seen.body).hexdigest():
            return "x-amz-content-sha256 is not the body's hash"
        if found["signature"] != self.signature(seen, signed):
            return "the signature does not match"
        self.checked += 1
        return None

    def signature(self, seen: Seen, signed: list[str]) -> str:
        """botocore's signature of `seen`, over the headers the client signed, at the client's X-Amz-Date."""
        headers = {name: seen.headers[name] for name in signed if name in seen.headers}
        request = AWSRequest(
            method=seen.method, url=f"http://{seen.headers['host']}{seen.target}", data=seen.body, headers=headers
        )
        request.context["timestamp"] = seen.headers["x-amz-date"]
        auth = SigV4Auth(
            Credentials(self.keys.access_key, self.keys.secret_key, self.keys.token), self.service, self.region
        )
        canonical = auth.canonical_request(request)
        return str(auth.signature(auth.string_to_sign(request, canonical), request))
