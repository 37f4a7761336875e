"""A Sluice destination connector for a HubSpot-like CRM, written in Python.

It upserts records through the batch upsert endpoint:

    POST /crm/v3/objects/{object}/batch/upsert
    {"inputs": [{"idProperty": "email", "id": "<record key>", "properties": {...}}]}

A record's key is the value of its unique id property (`email` by default), and its
payload's fields are the object's properties. The destination answers 200 when every
input was written, or 207 (multi-status) with an `errors` list; neither list follows the
order of the inputs, so results are matched to records by the id property's value and
errors by the record ids in their `context`.

Built with componentize-py against the `destination-connector` world in `wit/`: see
README.md. Like every connector it does no I/O and reads no clock: it only turns batches
into requests and responses into verdicts.
"""

import calendar
import email.utils
import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports import types as t

KNOWN_SETTINGS = ("object", "id_property", "max_batch_records", "max_batch_bytes")

# The batch endpoints take at most 100 inputs.
MAX_INPUTS = 100

# A response body larger than this is not read: an upsert of 100 records answers with a
# few hundred kilobytes at most, and decoding many megabytes in the sandbox would spend
# the call's time and memory budget on something that is not an answer anyway.
MAX_BODY_BYTES = 4 * 1024 * 1024

# Per-record error categories that another try can fix: another writer held the record.
RETRY_CATEGORIES = ("CONFLICT", "LOCKED", "CONCURRENT_MODIFICATION", "RATE_LIMITS")

NAME = re.compile(r"^[A-Za-z0-9_]+$")


def failure(code, message, fields=None):
    return t.Failure(code=code, message=message, fields=list(fields or []))


class Config:
    def __init__(self, object_type, id_property, max_records, max_bytes):
        self.object_type = object_type
        self.id_property = id_property
        self.max_records = max_records
        self.max_bytes = max_bytes


# What `configure` decided for this instance. Each worker has its own instance.
CONFIG = None


def setting_error(key, message):
    return Err(failure("INVALID_SETTING", "setting `%s`: %s" % (key, message)))


def whole_number(settings, key, default, low, high):
    raw = settings.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise setting_error(
            key, "expected a whole number from %d to %d, got %r" % (low, high, raw)
        )
    return int(raw)


def parse_settings(pairs):
    settings = {}
    for key, value in pairs:
        if key not in KNOWN_SETTINGS:
            raise setting_error(
                key, "unknown setting; known settings are: " + ", ".join(KNOWN_SETTINGS)
            )
        if key in settings:
            raise setting_error(key, "given more than once")
        settings[key] = value
    object_type = settings.get("object", "").strip() or "contacts"
    id_property = settings.get("id_property", "").strip() or "email"
    for key, value in (("object", object_type), ("id_property", id_property)):
        if not NAME.match(value):
            raise setting_error(
                key, "%r is not a HubSpot name (letters, digits, underscores)" % value
            )
    return Config(
        object_type,
        id_property,
        whole_number(settings, "max_batch_records", MAX_INPUTS, 1, MAX_INPUTS),
        whole_number(settings, "max_batch_bytes", 3_000_000, 1, 2**63),
    )


def keep_text(text):
    """Numbers keep their source spelling: HubSpot property values are strings."""
    return text


def no_constant(name):
    raise ValueError("%s is not a JSON number" % name)


def properties_of(payload):
    """The payload as HubSpot properties, or the failure that says why it cannot be."""
    try:
        fields = json.loads(
            payload, parse_int=keep_text, parse_float=keep_text, parse_constant=no_constant
        )
    except ValueError as e:
        return None, failure("INVALID_JSON", "payload is not valid JSON: %s" % e)
    if not isinstance(fields, dict):
        return None, failure("INVALID_JSON", "payload is not a JSON object")
    properties = {}
    for name, value in fields.items():
        if isinstance(value, (dict, list)):
            return None, failure(
                "INVALID_PROPERTY_VALUE",
                "property %r holds a JSON %s; HubSpot properties are flat values"
                % (name, "object" if isinstance(value, dict) else "array"),
                [name],
            )
        if value is None:
            value = ""  # HubSpot clears a property given an empty string.
        elif value is True or value is False:
            value = "true" if value else "false"
        properties[name] = value
    return properties, None


def check_record(config, record):
    """Why a record cannot be sent as it stands, or None."""
    if not record.key.strip():
        return failure("MISSING_ID", "the record key (the %s) is empty" % config.id_property)
    if config.id_property == "email" and not looks_like_email(record.key):
        return failure(
            "INVALID_EMAIL",
            "the record key %r is not an email address, and id_property is email"
            % record.key,
            ["email"],
        )
    return properties_of(record.payload)[1]


def looks_like_email(text):
    local, at, domain = text.partition("@")
    return bool(at and local and "." in domain.strip(".") and "@" not in domain)


def not_configured():
    return failure("NOT_CONFIGURED", "configure has not succeeded on this instance")


class Destination(exports.Destination):
    def configure(self, settings):
        global CONFIG
        CONFIG = parse_settings(settings)
        host.log(
            host.Level.DEBUG,
            "configured: object=%s id_property=%s"
            % (CONFIG.object_type, CONFIG.id_property),
        )
        return t.Limits(max_batch_records=CONFIG.max_records, max_batch_bytes=CONFIG.max_bytes)

    def precheck(self, batch):
        if CONFIG is None:
            return [None for _ in batch]
        outcomes = []
        for record in batch:
            problem = check_record(CONFIG, record)
            outcomes.append(None if problem is None else t.PrecheckOutcome_Rejected(problem))
        return outcomes

    def build_request(self, batch):
        if CONFIG is None:
            raise Err(not_configured())
        inputs = []
        for record in batch:
            properties, problem = properties_of(record.payload)
            if problem is not None:
                raise Err(
                    failure(problem.code, "record %r: %s" % (record.key, problem.message), problem.fields)
                )
            inputs.append(
                {"idProperty": CONFIG.id_property, "id": record.key, "properties": properties}
            )
        body = json.dumps({"inputs": inputs}, separators=(",", ":"), ensure_ascii=False)
        return t.HttpRequest(
            method="POST",
            url="/crm/v3/objects/%s/batch/upsert" % CONFIG.object_type,
            headers=[("content-type", "application/json")],
            body=body.encode("utf-8"),
        )

    def classify(self, keys, response):
        if CONFIG is None:
            return t.Verdict_Fatal(not_configured())
        # The contract forbids trapping on any response: an unforeseen error in this code
        # becomes a transient failure that names it, and the host retries the batch.
        try:
            return classify(CONFIG, keys, response)
        except Exception as e:  # noqa: BLE001
            return t.Verdict_Transient(
                failure("CONNECTOR_ERROR", "could not read the response: %r" % e)
            )


def classify(config, keys, response):
    status = response.status
    if status in (200, 201, 207):
        return per_record(config, keys, response.body)
    body = parse_body(response.body)
    if status == 429:
        return rate_limited(body, response)
    if status == 401:
        return t.Verdict_AuthExpired(error_from_body(status, body, response.body))
    if status in (400, 413, 414, 422):
        # The whole batch was refused for something in it (a property that does not
        # exist, too many inputs): the host bisects it to find the record.
        return t.Verdict_BatchRejected(error_from_body(status, body, response.body))
    if status == 503:
        wait = retry_after(response)
        if wait is not None:
            return t.Verdict_RateLimited(wait)
    if status in (408, 409, 423) or status >= 500:
        return t.Verdict_Transient(error_from_body(status, body, response.body))
    f = error_from_body(status, body, response.body)
    if status == 403:
        f.message = "the token lacks a scope this object needs: " + f.message
    elif status == 404:
        f.message = "the object type does not exist (check `object`): " + f.message
    return t.Verdict_Fatal(f)


def parse_body(raw):
    """The body as JSON, or None (empty, too large, not JSON, not UTF-8)."""
    if not raw or len(raw) > MAX_BODY_BYTES:
        return None
    try:
        return json.loads(bytes(raw).decode("utf-8"))
    except ValueError:
        return None


def text(value):
    return value if isinstance(value, str) and value.strip() else None


def snippet(raw, limit=200):
    head = bytes(raw[: limit * 4]).decode("utf-8", "replace").strip()
    return head[:limit] + ("…" if len(head) > limit or len(raw) > limit * 4 else "")


def error_from_body(status, body, raw):
    """The failure a non-2xx body states; HTTP_<status> when it says nothing usable.

    HubSpot errors look like {"status": "error", "category": "VALIDATION_ERROR",
    "message": "...", "errors": [{"code": "PROPERTY_DOESNT_EXIST", "message": "...",
    "context": {"propertyName": ["x"]}}]}: the most specific code wins.
    """
    code, message, fields = None, None, []
    if isinstance(body, dict):
        detail = body.get("errors")
        first = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else {}
        code = text(first.get("code")) or text(body.get("subCategory")) or text(body.get("category"))
        message = text(body.get("message")) or text(first.get("message"))
        fields = property_names(first.get("context"))
    if message is None:
        message = "HTTP %d with an empty body" % status if not raw else "HTTP %d: %s" % (status, snippet(raw))
    return failure(code or "HTTP_%d" % status, message, fields)


def property_names(context):
    names = context.get("propertyName") if isinstance(context, dict) else None
    if isinstance(names, str):
        return [names]
    if isinstance(names, list):
        return [n for n in names if isinstance(n, str)]
    return []


def rate_limited(body, response):
    policy = body.get("policyName") if isinstance(body, dict) else None
    if policy == "DAILY":
        # The account's daily request allowance is spent and comes back at midnight.
        # Waiting for it would hold the whole run paused for hours: stop the run instead;
        # its unconfirmed records stay pending and the next run sends them.
        return t.Verdict_Fatal(
            failure(
                "DAILY_LIMIT_REACHED",
                "the account's daily API request limit is used up; run again after it resets at midnight (the account's time zone)",
            )
        )
    wait = retry_after(response)
    if wait is None and policy in ("SECONDLY", "TEN_SECONDLY_ROLLING"):
        # No Retry-After: the policy's own window tells how long to wait at most.
        wait = t.Wait_AfterMs(1000 if policy == "SECONDLY" else 10_000)
    return t.Verdict_RateLimited(wait)


def retry_after(response):
    """Retry-After as delta-seconds or an HTTP-date; None when absent or unreadable."""
    value = None
    for name, v in response.headers:
        if name.lower() == "retry-after":
            value = v.strip()
            break
    if not value:
        return None
    if value.isdigit():
        return t.Wait_AfterMs(min(int(value) * 1000, 2**64 - 1))
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    seconds = calendar.timegm(parsed[:9]) - (parsed[9] or 0)
    if seconds < 0:
        return None
    return t.Wait_UntilUnixMs(min(seconds * 1000, 2**64 - 1))


def per_record(config, keys, raw):
    """One outcome per key from a 200/207 body, matched by id, never by position."""
    if len(raw) > MAX_BODY_BYTES:
        return malformed("the response body is %d bytes, more than an upsert answer can be" % len(raw))
    body = parse_body(raw)
    if not isinstance(body, dict):
        return malformed("the response body is not a JSON object")
    results = body.get("results", [])
    errors = body.get("errors", [])
    if not isinstance(results, list) or not isinstance(errors, list):
        return malformed("`results` and `errors` must be lists")

    wanted = set(keys)
    folded = {}
    for key in keys:
        folded.setdefault(key.casefold(), key)
    delivered = {}
    for result in results:
        if not isinstance(result, dict):
            return malformed("a result is not an object")
        properties = result.get("properties")
        value = properties.get(config.id_property) if isinstance(properties, dict) else None
        if not isinstance(value, str):
            continue
        # HubSpot stores emails in lower case: match exactly first, then without case.
        key = value if value in wanted else folded.get(value.casefold())
        if key is not None:
            hubspot_id = result.get("id")
            delivered[key] = str(hubspot_id) if isinstance(hubspot_id, (str, int)) else None

    refused = {}
    for error in errors:
        if not isinstance(error, dict):
            return malformed("an error is not an object")
        context = error.get("context")
        ids = context.get("ids") if isinstance(context, dict) else None
        if not isinstance(ids, list):
            continue
        category = text(error.get("category")) or "UNKNOWN_ERROR"
        code = text(error.get("subCategory")) or category
        message = text(error.get("message")) or code
        f = failure(code, message, property_names(context))
        outcome = (
            t.RecordOutcome_Retry(f) if category in RETRY_CATEGORIES else t.RecordOutcome_Rejected(f)
        )
        for record_id in ids:
            if not isinstance(record_id, str):
                continue
            key = record_id if record_id in wanted else folded.get(record_id.casefold())
            if key is not None:
                refused.setdefault(key, outcome)

    outcomes = []
    for key in keys:
        if key in refused:
            outcomes.append(refused[key])
        elif key in delivered:
            outcomes.append(t.RecordOutcome_Delivered(delivered[key]))
        else:
            # Neither written nor refused: never count it delivered unconfirmed.
            outcomes.append(
                t.RecordOutcome_Retry(
                    failure("NO_RESULT", "the response has no result and no error for %r" % key)
                )
            )
    return t.Verdict_PerRecord(outcomes)


def malformed(message):
    return t.Verdict_Transient(failure("MALFORMED_RESPONSE", message))
