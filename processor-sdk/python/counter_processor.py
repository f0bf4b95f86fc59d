#!/usr/bin/python3
"""A counter machine as a Loom processor in Python.

  init                  event {"type":"counter_created","value":S}   (args {"start":S}, default 0)
  call {"op":"inc","by":N}  event {"type":"incremented","by":N,"value":V}, response {"value":V}
  call {"op":"get"}         response {"value":V}
  call {"op":"arm","ms":N}  sets the timer N ms ahead
  timeout                   event {"type":"tick","value":V}
aux_state is {"value":V}; events and payloads are msgpack maps.
Bad args (not a msgpack map, unknown op, wrong types) fail the step for good.

usage: counter_processor.py --listen ADDR [--pb-dir DIR]
  --pb-dir: where the build generated loom_pb2.py."""

import argparse
import asyncio
import os
import sys


def parse_args(argv):
    p = argparse.ArgumentParser(description="Loom counter processor")
    p.add_argument("--listen", required=True, help="tcp:HOST:PORT or unix:PATH")
    p.add_argument("--pb-dir", help="directory holding the generated loom_pb2.py")
    return p.parse_args(argv)


OPTS = parse_args(sys.argv[1:])
sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if OPTS.pb_dir:
    sys.path.insert(0, OPTS.pb_dir)

import loom_pb2 as pb  # noqa: E402
from loom_msgpack import MsgpackError, packb, unpackb  # noqa: E402
from loom_processor import Processor  # noqa: E402


def args_map(req):
    if not req.args:
        return {}
    args = unpackb(req.args)
    if not isinstance(args, dict):
        raise MsgpackError("args must be a map")
    return args


def int_arg(args, key, default):
    v = args.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool):
        raise MsgpackError("%s must be an integer" % key)
    return v


def current_value(req):
    if req.machine.aux_state:
        return int_arg(unpackb(req.machine.aux_state), "value", 0)
    value = 0  # no snapshot: fold the history
    for ev in req.machine.history:
        value = int_arg(unpackb(ev.data), "value", value)
    return value


def step(fn):
    """Turns malformed input into a non-retryable failure with the reason."""
    def wrapped(req, res):
        try:
            fn(req, res)
        except MsgpackError as e:
            res.fail("bad payload: %s" % e, retryable=False)
    return wrapped


def record(res, event, value):
    res.append_event(packb(event))
    res.set_aux_state(packb({"value": value}))


@step
def on_init(req, res):
    start = int_arg(args_map(req), "start", 0)
    record(res, {"type": "counter_created", "value": start}, start)


@step
def on_call(req, res):
    args = args_map(req)
    op = args.get("op")
    value = current_value(req)
    if op == "inc":
        by = int_arg(args, "by", 1)
        value += by
        record(res, {"type": "incremented", "by": by, "value": value}, value)
        res.respond(packb({"value": value}))
    elif op == "get":
        res.respond(packb({"value": value}))
    elif op == "arm":
        ms = int_arg(args, "ms", 0)
        if ms <= 0:
            raise MsgpackError("ms must be positive")
        res.set_timer_timeout(ms)
        res.respond(packb({"armed_ms": ms}))
    else:
        res.fail("unknown op %r (inc, get, arm)" % (op,), retryable=False)


@step
def on_timeout(req, res):
    value = current_value(req)
    record(res, {"type": "tick", "value": value}, value)


async def main():
    proc = Processor()
    proc.on(pb.PROCESS_INIT, on_init)
    proc.on(pb.PROCESS_CALL, on_call)
    proc.on(pb.PROCESS_TIMEOUT, on_timeout)
    await proc.listen(OPTS.listen)
    print("counter_processor: listening on %s" % proc.address(), file=sys.stderr, flush=True)
    await proc.run()


if __name__ == "__main__":
    asyncio.run(main())
