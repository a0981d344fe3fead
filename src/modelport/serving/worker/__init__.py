"""The gunicorn worker ``modelport serve`` runs: one thread reads requests, a pool answers them.

gunicorn's threaded worker (gthread) spent ~170 µs of CPU per request of its own: a pure-Python
parser, a future and two thread hand-offs per request, and every kept-alive connection taken
out of and put back into its poller between requests. For a 1-row request that was more than
the model and all of modelport's request handling together. This worker keeps gunicorn's
master (binding, supervision and replacement of workers, SIGTERM draining, SIGHUP reloads,
heartbeats) and replaces only the request loop:

- The main thread accepts, reads and parses with httptools (llhttp, Node.js's parser). A
  kept-alive connection stays registered with the selector for its whole life.
- A complete request goes through one queue to a pool of ``threads`` threads. The thread that
  answers it writes the response itself, then goes on with the next request already read from
  the same connection (pipelining) without going back through the main thread.
- Requests on different connections run concurrently, so the dynamic batcher merges them.
- Writes never block a pool thread: what a client does not take at once waits in the
  connection (at most ``MAX_UNSENT_BYTES`` before its next request is answered) and the main
  thread sends it as the client reads, so clients that never read hold no thread.
- Only the main thread closes a socket; a pool thread that is done with a connection shuts
  its sending side, and the main thread closes it when the client has closed too (or after a
  short linger), so a client always reads the whole answer, even one refusing a body it has
  not finished sending.
- Every client costs a bounded share of the worker: deadlines for a head and a minimum body
  rate (408), a connection limit at which the oldest idle connections make room, a bound on
  requests read ahead per connection, and a budget of buffered request bytes (503).

The modules, in the order they depend on each other (uvicorn's connection / request-cycle split):

- :mod:`.request`: one parsed request (:class:`Request`), and a refusal the worker answers itself.
- :mod:`.limits`: what a client may cost (its constants), and the :class:`BufferBudget`.
- :mod:`.connection`: one client (:class:`Connection`): its state, the httptools callbacks
  that parse into requests, and its send buffer.
- :mod:`.cycle`: one request answered (:class:`RequestCycle`): the WSGI environ, the
  application and ``start_response``, the answer's bytes.
- :mod:`.loop`: the gunicorn worker (:class:`ModelportWorker`): the selector loop, accepting
  and evicting, deadlines, wake-ups, and the pool threads.
"""

from modelport.serving.worker.loop import ModelportWorker

__all__ = ["ModelportWorker"]
