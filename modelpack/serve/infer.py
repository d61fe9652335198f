"""An infer request's body to its encoded answer: parsing, validating the inputs against the model's
signature, predicting, encoding the outputs within max_response_bytes. No HTTP here (app.py routes).

JSON is orjson: NaN and infinities in outputs are written as null (valid JSON, unlike the stdlib's NaN
token); integers beyond 64 bits in a request arrive as floats and are refused for integer datatypes;
nesting deeper than 1024 is refused as a 400.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from modelpack.serve.config import ServingConfig
from modelpack.serve.handlers import LoadedModel, OnnxHandler
from modelpack.serve.tensors import Array, EncodeError, TensorError, decode_input, encode_output

log = logging.getLogger("modelpack.serve")

# The error kind of a RequestError that names none (modelpack_errors_total{kind}).
_KINDS = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large",
          500: "internal", 503: "not_ready"}  # fmt: skip


class RequestError(Exception):
    """A request the client must fix; `status` is the HTTP status to answer with."""

    def __init__(
        self,
        message: str,
        status: int = 400,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
        self.kind = kind or _KINDS.get(status, "internal")


def answer(config: ServingConfig, model: LoadedModel, body: bytes, request_id: str) -> bytes:
    """The encoded answer to an infer body: on the loop for small bodies, in a thread for large ones."""
    request = _parse(body)
    del body  # the decoded request replaces it; do not hold both during predict
    inputs = _inputs(model, request["inputs"])
    wanted = _wanted_outputs(model, request.get("outputs"))
    given = request.get("id")
    request_id = given if isinstance(given, str) else request_id
    del request
    outputs = _predict(model, inputs, wanted, request_id, config.response_limit)
    payload = orjson.dumps(
        {
            "model_name": config.name,
            "model_version": config.version,
            "id": request_id,
            "outputs": outputs,
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if len(payload) > config.response_limit:
        raise _too_big(outputs, len(payload), config.response_limit)
    return payload


# The fewest JSON characters one element of each kind takes ("1," "true,"): a lower bound of the answer's
# size, known before encoding, so an answer that cannot fit is refused before it is built.
_MIN_CHARS = {"BOOL": 5, "BYTES": 3}


def _too_big(outputs: list[dict[str, Any]], size: int, limit: int) -> RequestError:
    shown = ", ".join(f"'{o['name']}' {o['datatype']} {o['shape']}" for o in outputs)
    return RequestError(
        f"the answer would be at least {size} bytes, over max_response_bytes ({limit}); outputs: {shown}; "
        "ask for fewer outputs or a smaller batch, or raise max_response_bytes",
        500,
        kind="response_too_large",
    )


def _parse(body: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise RequestError("request body is nested too deeply (JSON depth limit 1024)") from None
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError("request body must be a JSON object with 'inputs'")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("request needs 'inputs': a non-empty list of tensors")
    if "id" in request and not isinstance(request["id"], str):
        raise RequestError("'id' must be a string")
    if "parameters" in request and not isinstance(request["parameters"], dict):
        raise RequestError("'parameters' must be an object")
    return request


def _inputs(model: LoadedModel, raw: list[Any]) -> dict[str, Array]:
    inputs: dict[str, Array] = {}
    for tensor in raw:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        spec = model.input_spec(name) if isinstance(name, str) else None
        if model.inputs is not None and spec is None and isinstance(name, str):
            known = ", ".join(s.name for s in model.inputs)
            raise RequestError(f"unknown input '{name}'; the model's inputs are: {known}")
        try:
            name, array = decode_input(tensor, spec)
        except TensorError as exc:
            raise RequestError(str(exc)) from None
        if name in inputs:
            raise RequestError(f"input '{name}' is given twice")
        inputs[name] = array
    for spec in model.inputs or ():
        if spec.name not in inputs:
            raise RequestError(f"missing input '{spec.name}' ({spec.datatype} {list(spec.shape)})")
    return inputs


def _wanted_outputs(model: LoadedModel, raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw
    ):
        raise RequestError("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in raw]
    known = [s.name for s in model.outputs] if model.outputs is not None else None
    for name in names:
        if name in model.unservable:
            continue  # the handler answers it with a 500 that names the output's type
        if known is not None and name not in known:
            raise RequestError(f"unknown output '{name}'; the model's outputs are: {', '.join(known)}")
    return names or None


_logged_failures: set[str] = set()


def _log_failure(exc: BaseException, request_id: str) -> None:
    # One traceback per exception type and place, then one line per request: a handler failing on every
    # request must not flood the log with identical tracebacks.
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{type(exc).__name__}@{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else ""
    if where in _logged_failures:
        log.error("handler failed (request id %s): %s: %s", request_id, type(exc).__name__, exc)
        return
    _logged_failures.add(where)
    log.error("handler failed (request id %s)", request_id, exc_info=exc)


def _predict(
    model: LoadedModel, inputs: dict[str, Array], wanted: list[str] | None, request_id: str, limit: int
) -> list[dict[str, Any]]:
    handler = model.handler
    try:
        if isinstance(handler, OnnxHandler):
            result: object = handler.run(inputs, wanted)
        else:
            result = handler.predict(inputs)
    except EncodeError as exc:
        raise RequestError(str(exc), 500) from None
    except ValueError as exc:  # the handler contract: ValueError means the caller sent something wrong
        raise RequestError(str(exc) or "the handler refused the inputs (ValueError)", 400) from None
    except (Exception, SystemExit) as exc:  # a handler calling sys.exit() must not stop the server
        _log_failure(exc, request_id)
        raise RequestError(
            f"handler failed: {type(exc).__name__}: {exc} (request id {request_id})", 500, kind="handler"
        ) from None
    if isinstance(result, np.ndarray):
        result = {"output": result}
    if not isinstance(result, Mapping):
        raise RequestError(f"handler returned {type(result).__name__}, not a dict of arrays or an array", 500)
    names = wanted if wanted is not None else list(result)
    outputs = []
    for name in names:
        if name not in result:
            raise RequestError(
                f"unknown output '{name}'; the handler returned: {', '.join(map(str, result))}"
            )
        try:
            outputs.append(encode_output(str(name), result[name]))
        except EncodeError as exc:
            raise RequestError(str(exc), 500) from None
    least = sum(_MIN_CHARS.get(o["datatype"], 2) * int(np.prod(o["shape"])) for o in outputs)
    if least > limit:
        raise _too_big(outputs, least, limit)
    return outputs
