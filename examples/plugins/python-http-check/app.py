"""HTTP JSON check in Python: the same check as plugins/http-json (status, a JSON field,
latency warning), built into a WASM component with componentize-py against sdk/wit.

Args: url (required), json_path (dotted), json_equals, warn_ms.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import http, types

KNOWN = {"url", "json_path", "json_equals", "warn_ms"}


def lookup(doc, path):
    for part in [p for p in path.split(".") if p]:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def text(v):
    return v if isinstance(v, str) else json.dumps(v)


class WitWorld(wit_world.WitWorld):
    def validate(self, config):
        args = dict(config)
        unknown = sorted(set(args) - KNOWN)
        if unknown:
            raise Err(f"unknown arg {unknown[0]!r} (known: {', '.join(sorted(KNOWN))})")
        url = args.get("url", "")
        if not (url.startswith("http://") or url.startswith("https://")):
            raise Err(f"arg \"url\": {url!r} is not an http:// or https:// URL")
        if "warn_ms" in args and not args["warn_ms"].isdigit():
            raise Err(f"arg \"warn_ms\": cannot parse {args['warn_ms']!r}")

    def check(self, ctx, config):
        args = dict(config)
        url = args["url"]
        req = http.Request(http.Method.GET, url, [], None, 0, False)
        try:
            resp = http.send(req)
        except Err as e:
            raise Err(f"{url}: {type(e.value).__name__.removeprefix('HttpError_').lower()}: {getattr(e.value, 'value', '')}")
        ms = resp.elapsed_us // 1000
        if not 200 <= resp.status < 300:
            return types.CheckResult(types.CheckStatus.CRITICAL, f"{url}: HTTP {resp.status} in {ms} ms")
        detail = ""
        if "json_path" in args:
            path = args["json_path"]
            try:
                doc = json.loads(resp.body)
            except ValueError as e:
                raise Err(f"{url}: body is not JSON: {e}")
            found = lookup(doc, path)
            if found is None:
                return types.CheckResult(types.CheckStatus.CRITICAL, f"{url}: JSON field {path!r} is missing")
            want = args.get("json_equals")
            if want is not None and text(found) != want:
                return types.CheckResult(
                    types.CheckStatus.CRITICAL, f"{url}: {path} is {text(found)!r}, expected {want!r}"
                )
            detail = f", {path} = {text(found)!r}"
        out = f"{url}: HTTP {resp.status} in {ms} ms{detail} (python)"
        if "warn_ms" in args and ms > int(args["warn_ms"]):
            return types.CheckResult(types.CheckStatus.WARNING, out + f" (slower than {args['warn_ms']} ms)")
        return types.CheckResult(types.CheckStatus.PASSING, out)
