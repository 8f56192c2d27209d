"""`falco-response evidence analyze PATH|s3://bucket/key [--json]`: analyze a checkpoint archive.

The archive is streamed (a local file, or the S3 object's body as it downloads), never unpacked and
never written anywhere; see steps/forensics/analysis.py for what the report holds. S3 settings as
`evidence list`/`get` take them (engine/evidence/store.py connect: response.yaml's
settings.evidence, then --region, --endpoint-url or $AWS_ENDPOINT_URL; credentials from botocore's
chain); the bucket is the URI's.

Exit status: 0 when a report was made, partial or not (its `errors` say what could not be read);
2 when the input cannot be read at all or a flag is wrong (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.patterns import S3_BUCKET


class _Body:
    """An S3 response body whose transport failures surface as OSError (the analyzer reports them
    as a read error and keeps what it has)."""

    def __init__(self, body) -> None:
        self.body = body

    def read(self, n: int = -1) -> bytes:
        try:
            return self.body.read(n)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore/urllib3 errors mid-download
            raise OSError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self.body.close()


def _s3_body(args: argparse.Namespace, uri: str):
    from engine.evidence import store

    bucket, _, key = uri[5:].partition("/")
    if not S3_BUCKET.fullmatch(bucket) or not key:
        raise store.BadInput(f"{uri[:120]!r} is not s3://<bucket>/<key>")
    conn = argparse.Namespace(policy_file=args.policy_file, bucket=bucket, prefix="", region=args.region, endpoint_url=args.endpoint_url)
    s3 = store.connect(conn)
    try:
        answer = s3.client.get_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - every S3/credential failure is one line
        raise store.BadInput(store.s3_error(exc, f"get {uri}")) from None
    return _Body(answer["Body"])


def _table(report: dict, summary: str) -> str:
    lines = [summary, ""]
    findings = report.get("findings") or []
    if findings:
        lines.append(f"{'SEVERITY':<8}  {'CODE':<20}  MESSAGE")
        lines += [f"{f['severity']:<8}  {f['code']:<20}  {f['message']}" for f in findings]
    else:
        lines.append("no findings")
    errors = report.get("errors") or []
    if errors:
        lines.append("")
        lines.append(f"partial report: {len(errors)} thing(s) could not be read")
        lines += [f"  {e}" for e in errors[:20]]
        if len(errors) > 20:
            lines.append(f"  ... and {len(errors) - 20} more (--json shows all)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from engine.evidence import store
    from steps.forensics.analysis import IndicatorError, ReadError, analyze_archive, summary

    source = None
    try:
        yara_rules = None
        if args.yara:
            try:
                yara_rules = Path(args.yara).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise store.BadInput(f"--yara {args.yara}: {getattr(exc, 'strerror', None) or exc}") from None
        if args.archive.startswith("s3://"):
            source = _s3_body(args, args.archive)
        else:
            path = Path(args.archive)
            if not path.is_file():
                raise store.BadInput(f"{args.archive}: no such file")
            source = str(path)
        report = analyze_archive(source, strings=args.string, regexes=args.regex, yara_rules=yara_rules)
    except (store.BadInput, ReadError, IndicatorError) as exc:
        print(f"error: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 2
    finally:
        if source is not None and not isinstance(source, str):
            source.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_table(report, summary(report)))
    return 0


def register(evidence_subparsers) -> None:
    p = evidence_subparsers.add_parser("analyze", help="analyze a checkpoint archive (a path or s3://bucket/key): processes, files, sockets, rootfs, findings")
    p.add_argument("archive", metavar="PATH|s3://bucket/key", help="the checkpoint archive")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--string", action="append", default=[], metavar="TEXT", help="an indicator string searched in memory and changed files (repeatable)")
    p.add_argument("--regex", action="append", default=[], metavar="PATTERN", help="an indicator regex (Python syntax, over bytes; repeatable)")
    p.add_argument("--yara", default=None, metavar="FILE", help="YARA rules (used when yara-python is installed; the report says when not)")
    p.add_argument("--policy-file", default="response.yaml", help="where settings.evidence is read for s3:// (default: response.yaml)")
    p.add_argument("--region", default=None, help="the bucket's region (default: settings.evidence.region)")
    p.add_argument("--endpoint-url", default=None, help="an S3-compatible endpoint (default: $AWS_ENDPOINT_URL, else settings.evidence.endpoint)")
    p.set_defaults(func=run)
