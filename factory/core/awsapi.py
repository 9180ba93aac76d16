"""The one door to AWS: every boto3 client is made here and every call goes through ``call``.

Credentials for real AWS come only from the standard chain (environment, shared files, instance
role); nothing here accepts or prints a key. An explicit endpoint is for local emulators (moto)
and must be loopback, so that a typo can never send a test's traffic to a real account; an
emulator is sent fixed dummy credentials, never the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from factory.core.errors import ConfigError, ExternalToolError

T = TypeVar("T")

LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
# What a local AWS API is sent instead of the caller's credentials: the caller's keys, whatever
# they are, never leave for an emulator, and an emulator's URL never gets a real key.
EMULATOR_KEY_ID = "AKIAFACTORYEMULATOR0"
EMULATOR_SECRET = "factory-emulator-not-a-secret"  # noqa: S105 -- a public dummy, by design
EMULATOR_ENV = {"AWS_ACCESS_KEY_ID": EMULATOR_KEY_ID, "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET}
# Error codes with which API servers say "this operation does not exist here".
NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "InternalFailure"})
# A local emulator answers at once; a wait longer than this means it is not answering at all.
LOCAL_TIMEOUT_S = 30
REMOTE_CONNECT_TIMEOUT_S = 10
REMOTE_READ_TIMEOUT_S = 60


@dataclass(frozen=True)
class AwsTarget:
    """Where AWS calls go: None is real AWS; a URL is a local emulator on loopback."""

    endpoint_url: str | None = None

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            check_loopback(self.endpoint_url)

    @property
    def emulated(self) -> bool:
        return self.endpoint_url is not None


class AwsCallFailed(ExternalToolError):
    """An AWS API call failed; ``code`` is the AWS error code when the server sent one."""

    def __init__(
        self, message: str, *, operation: str, region: str | None, code: str | None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.operation = operation
        self.region = region
        self.code = code


class NotImplementedByEndpoint(AwsCallFailed):
    """The API server does not implement this operation (typically a local emulator)."""


def check_loopback(url: str) -> str:
    """``url`` if it is an http(s) URL of a loopback host; anything else is refused (exit 2)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"AWS endpoint {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"} or host not in LOOPBACK:
        raise ConfigError(
            f"AWS endpoint {url!r}: only a loopback endpoint is accepted (127.0.0.1, ::1, localhost)",
            hint="use http://127.0.0.1:PORT for a local AWS API, or leave the endpoint unset to use "
            "real AWS through the standard credential chain",
        )
    return url


def client(target: AwsTarget, service: str, region: str) -> Any:
    """A boto3 client for ``service`` in ``region``: real AWS with credentials from the standard
    chain only, or a loopback emulator with fixed dummy credentials (never the caller's)."""
    import boto3  # noqa: PLC0415 -- boto3 takes ~0.3 s to import; only AWS commands pay for it
    from botocore.config import Config  # noqa: PLC0415

    if target.endpoint_url is not None:
        # Checked again here: a target built with object.__setattr__ or a subclass must not slip by.
        check_loopback(target.endpoint_url)
        config = Config(
            # moto answers unimplemented calls with HTML 500s; retrying them only wastes time.
            retries={"max_attempts": 1},
            connect_timeout=LOCAL_TIMEOUT_S,
            read_timeout=LOCAL_TIMEOUT_S,
        )
    else:
        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=REMOTE_CONNECT_TIMEOUT_S,
            read_timeout=REMOTE_READ_TIMEOUT_S,
            # None means real AWS: an AWS_ENDPOINT_URL in the environment must not redirect it.
            ignore_configured_endpoint_urls=True,
        )
    if target.endpoint_url is not None:
        return boto3.client(
            service, region_name=region, endpoint_url=target.endpoint_url, config=config,
            aws_access_key_id=EMULATOR_KEY_ID, aws_secret_access_key=EMULATOR_SECRET,
        )  # fmt: skip
    return boto3.client(service, region_name=region, config=config)


def call(what: str, fn: Callable[..., T], **kwargs: Any) -> T:
    """Call one boto3 operation; botocore's failures become ``AwsCallFailed`` with a clear message.

    ``what`` says what we were doing ("copy ami-1 to us-west-2"); the message adds the operation,
    the region and the AWS error code. Request parameters are not echoed (they never hold
    credentials, but tags and descriptions need not end up in CI logs either).
    """
    from botocore.exceptions import (  # noqa: PLC0415
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        WaiterError,
    )
    from botocore.parsers import ResponseParserError  # noqa: PLC0415

    operation = getattr(fn, "__name__", "call")
    meta = getattr(getattr(fn, "__self__", None), "meta", None)
    region: str | None = getattr(meta, "region_name", None)
    endpoint: str | None = getattr(meta, "endpoint_url", None)
    where = f"{operation} in {region}" if region else operation
    try:
        return fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "") or None
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = error.get("Message") or ""
        if code in NOT_IMPLEMENTED_CODES:
            raise NotImplementedByEndpoint(
                f"{what}: {where} is not implemented by {endpoint} ({code})",
                operation=operation, region=region, code=code,
            ) from None  # fmt: skip
        raise AwsCallFailed(
            f"{what}: {where} failed with {code or f'HTTP {status}'}: {detail}".rstrip(": "),
            operation=operation, region=region, code=code,
        ) from None  # fmt: skip
    except ResponseParserError as exc:
        # moto's answer to an operation it does not implement: an HTML "500 Internal Server Error".
        if "<html" in str(exc).lower() and _is_loopback(endpoint):
            raise NotImplementedByEndpoint(
                f"{what}: {where} is not implemented by {endpoint} (HTTP 500 with an HTML body)",
                operation=operation, region=region, code=None,
                hint="a local emulator lacks this operation; real AWS has it",
            ) from None  # fmt: skip
        raise AwsCallFailed(
            f"{what}: {where}: unreadable answer from {endpoint}",
            operation=operation, region=region, code=None,
        ) from None  # fmt: skip
    except NoCredentialsError:
        raise AwsCallFailed(
            f"{what}: {where}: no AWS credentials found",
            operation=operation, region=region, code=None,
            hint="configure the standard chain: AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
            "or an instance role",
        ) from None  # fmt: skip
    except EndpointConnectionError:
        raise AwsCallFailed(
            f"{what}: {where}: cannot connect to {endpoint}",
            operation=operation, region=region, code=None,
            hint="check the network, the region name, or that the local endpoint is running",
        ) from None  # fmt: skip
    except WaiterError as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise AwsCallFailed(
            f"{what}: {where}: gave up waiting: {reason}",
            operation=operation, region=region, code=None,
        ) from None  # fmt: skip
    except BotoCoreError as exc:
        raise AwsCallFailed(
            f"{what}: {where}: {type(exc).__name__}: {exc}",
            operation=operation, region=region, code=None,
        ) from None  # fmt: skip


def pages(what: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every page of a paginated operation, each through ``call``, following ``NextToken``."""
    token: str | None = None
    while True:
        page = call(what, fn, **kwargs, **({"NextToken": token} if token else {}))
        yield page
        token = page.get("NextToken")
        if not token:
            return


def _is_loopback(url: str | None) -> bool:
    if not url:
        return False
    try:
        return urlsplit(url).hostname in LOOPBACK
    except ValueError:
        return False
