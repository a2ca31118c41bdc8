"""The ``batch`` method, as ``CRestProvider::methodsBatch`` runs it.

Top-level keys are case-insensitive; ``halt`` is PHP-truthy; ``cmd`` is a list or a map; a
non-string entry is skipped but uses a slot; entries past the 50th each get
``ERROR_BATCH_LENGTH_EXCEEDED``; ``batch``/``download``/``upload`` (exact spelling) are refused
per command; ``#`` cuts a command; references are substituted from earlier commands; a failed
command appears only in ``result_error``; ``halt`` stops with no entry for the rest.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import CallContext, MethodResult
from .php import PhpKey, parse_str, parse_url_path_query, php_key, php_truthy
from .substitution import BatchMaps, substitute

__all__ = ["FORBIDDEN_IN_BATCH", "batch_handler"]

FORBIDDEN_IN_BATCH = ("batch", "download", "upload")
#: Credential parameters the outer request copies over each sub-command (then removed).
_AUTH_KEYS: dict[str, tuple[str, ...]] = {
    "oauth": ("auth", "access_token"),
    "webhook": ("aplogin", "ap"),
}


def batch_handler(ctx: CallContext, params: dict[PhpKey, Any]) -> MethodResult:
    """Run the commands of one batch and build its five result maps."""
    upper = {str(k).upper(): v for k, v in params.items()}
    commands = upper.get("CMD")
    halt = php_truthy(upper.get("HALT"))
    if not isinstance(commands, dict):
        commands = {}
    ctx.stats.batches += 1
    maps = BatchMaps()
    times: dict[PhpKey, Any] = {}
    result_errors: dict[PhpKey, Any] = {}
    processing = 0.0
    config = ctx.config
    strip = _AUTH_KEYS[ctx.caller.kind]
    for slot, (raw_key, command) in enumerate(commands.items(), start=1):
        if ctx.timeline.timed_out:
            break  # the request is being cut off: later commands never start
        key = php_key(raw_key)
        failure: errors.RestError | None = None
        if slot > config.batch_max_length:
            failure = errors.batch_length_exceeded()
        elif not isinstance(command, str):
            continue  # silently skipped, but it used a slot
        else:
            method, query = parse_url_path_query(command)
            if method in FORBIDDEN_IN_BATCH:
                failure = errors.batch_method_not_allowed()
            else:
                sub_params = parse_str(query, config.max_input_vars) if query else {}
                sub_params = substitute(sub_params, maps)
                for name in strip:
                    sub_params.pop(name, None)
                outcome = ctx.engine.call(
                    method, sub_params, ctx.caller, ctx.timeline, in_batch=True
                )
                processing += outcome.seconds
                if outcome.error is not None:
                    failure = outcome.error
                else:
                    maps.maps["result"][key] = outcome.result
                    if outcome.next is not None:
                        maps.maps["next"][key] = outcome.next
                    if outcome.total is not None:
                        maps.maps["total"][key] = outcome.total
                    maps.maps["time"][key] = outcome.time
                    times[key] = outcome.time
        if failure is not None:
            if failure.code in ("ERROR_BATCH_LENGTH_EXCEEDED", "ERROR_BATCH_METHOD_NOT_ALLOWED"):
                ctx.stats.command_errors[failure.code] += 1
            entry = failure.body()
            result_errors[key] = entry
            maps.record_error(key, entry)
            # The test is on the stored entry (an array), so an empty code still halts.
            if halt:
                break
    overhead = config.cost_of("batch").seconds(0)
    ctx.timeline.advance(overhead)
    return MethodResult(
        result={
            "result": maps.maps["result"],
            "result_error": result_errors,
            "result_total": maps.maps["total"],
            "result_next": maps.maps["next"],
            "result_time": times,
        },
        processing=processing,
    )
