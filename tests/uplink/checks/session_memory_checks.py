# The uplink's sessions when the heap cannot serve one of their steps, over the fake transport
# of uplink_checks, on a virtual device under both interpreters: a socket whose TLS stream
# cannot be made is closed, a session whose online status or whose CONNECT's call cannot be
# made leaves no socket open, and a session that runs out of memory is a failed session (its
# backoff, its status), not the uplink's task ended.
import asyncio

from uplink_checks import Broker, Device, FakeCounters, clean


def _no_room(*args):
    # Stands in for a step the heap cannot serve.
    raise MemoryError("memory allocation failed, allocating 512 bytes")


async def _session_without_room(owner_of, name, step_name):
    # A session's step (the uplink's step_name) where owner.name cannot be served by the
    # heap, owner being owner_of(the uplink): -> (whether it ended in a MemoryError, whether
    # a socket was opened, the broker behind it).
    clean()
    broker = Broker()
    uplink = Device(FakeCounters(), [broker]).uplink
    owner = owner_of(uplink)
    made = getattr(owner, name)
    setattr(owner, name, _no_room)
    raised = False
    try:
        await getattr(uplink, step_name)()
    except MemoryError:
        raised = True
    finally:
        setattr(owner, name, made)
        await uplink._release()
    opened = not uplink.link.brokers  # the manager hands out its broker on the first open
    return raised, opened, broker


async def check_a_socket_whose_tls_stream_cannot_be_made_is_closed():
    # The TLS engine cannot be made (here a heap without the block it needs): the socket it
    # was to run over is closed, not left open as the modem's only one, where every later
    # session would find none. (The stand-in engine fails before using the context.)
    from app.uplink import tlsstream

    def tls_device(uplink):
        uplink._tls = "a context"  # as a TLS device's uplink holds one
        return tlsstream

    raised, opened, broker = await _session_without_room(tls_device, "TLSStream", "_open")
    ok = raised and opened and broker.closed
    if not ok:
        print("tls stream", raised, opened, broker.closed)
    return ok


async def check_a_status_that_cannot_be_made_leaves_no_socket_open():
    # The online status the CONNECT carries cannot be made (a heap without room for it): the
    # session ends with no socket left open.
    raised, opened, broker = await _session_without_room(lambda uplink: uplink,
                                                         "status_message", "_session")
    ok = raised and (not opened or broker.closed)
    if not ok:
        print("status", raised, opened, broker.closed)
    return ok


async def check_a_connect_that_cannot_begin_leaves_no_socket_open():
    # The CONNECT's call cannot even begin (a heap without room for its frame): the socket
    # opened for it is closed.
    from app.uplink.mqtt import MQTTClient

    raised, opened, broker = await _session_without_room(lambda uplink: MQTTClient, "connect",
                                                         "_session")
    ok = raised and opened and broker.closed
    if not ok:
        print("connect", raised, opened, broker.closed)
    return ok


async def check_a_session_that_runs_out_of_memory_is_a_failed_session():
    # The first session's online status cannot be made: the session ends as any failed one
    # (logged, counted, its backoff), the uplink's task goes on, and the next session comes up.
    clean()
    first = Broker()
    second = Broker()
    app = Device(FakeCounters(), [first, second])
    uplink = app.uplink
    tries = []

    def status_once(as_json):
        tries.append(as_json)
        if len(tries) == 1:
            raise MemoryError("memory allocation failed, allocating 512 bytes")
        return b"1"

    uplink.status_message = status_once
    task = asyncio.create_task(uplink.run())
    await asyncio.sleep(30)  # past the first backoff (5 s)
    ended = task.done()
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await uplink._release()
    status = uplink.status
    ended_for_memory = app.logged("session ended: memory allocation failed, allocating 512")
    ok = (not ended and len(tries) == 2 and status["failures"] == 1
          and len(ended_for_memory) == 1 and status["connects"] == 1
          # The failed session opened no socket: the next one took the first.
          and first.got and first.got[0][0] == 0x10 and not second.got)
    if not ok:
        print("memory", ended, tries, status, app.logged(""), first.got, second.got[:2])
    return ok
