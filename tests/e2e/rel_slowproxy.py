"""A TCP proxy on 127.0.0.1 that forwards to 127.0.0.1:UPSTREAM at a capped rate.

    python3 rel_slowproxy.py UPSTREAM_PORT BYTES_PER_SECOND

Prints its port on the first stdout line. Each direction of each connection is paced to
BYTES_PER_SECOND (16 KiB chunks), so a multi-megabyte download through it lasts long enough
for a test to kill the client in the middle of it. Loopback only; exits on SIGTERM.
"""
import asyncio
import sys

CHUNK = 16384


async def pump(reader, writer, rate):
    loop = asyncio.get_running_loop()
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            t0 = loop.time()
            writer.write(data)
            await writer.drain()
            delay = len(data) / rate - (loop.time() - t0)
            if delay > 0:
                await asyncio.sleep(delay)
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def main():
    upstream, rate = int(sys.argv[1]), float(sys.argv[2])

    async def handle(creader, cwriter):
        try:
            sreader, swriter = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(pump(creader, swriter, rate), pump(sreader, cwriter, rate))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
