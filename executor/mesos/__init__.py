"""The Mesos front-end: everything shaped by the agent's v1 executor HTTP API.

Pure (no I/O, threads, clocks or logging), lowest first:
    errors.py     who is at fault: RemoteProtocolError (the agent) or LocalProtocolError (a bug)
    recordio.py   RecordIO framing of the event stream
    wire.py       the JSON both ways: events, call bodies, TaskInfo fields, TASK_* names
    session.py    the session state and the status updates still owed to the agent
    reconnect.py  when to resubscribe and when to give up on the agent
    agentroute.py how to reach the agent: TCP, TLS or its unix socket, the URL path
Adapters:
    agenttls.py   libprocess' SSL variables, the client context, the TLS connection (loaded
                  only when libprocess SSL is on: it imports `ssl`)
    transport.py  HTTP over `http.client`: the SUBSCRIBE stream and the calls
    callbacks.py  the callback interface the driver runs (pymesos names)
    sender.py     the driver's sender thread (UPDATE, MESSAGE)
    driver.py     the threads: subscribe, read, dispatch callbacks; reconnect or give up
    reporter.py   the TaskOwner's updates as status updates through the driver
    executor.py   `stoker executor`: the callbacks wired to one TaskOwner, the exit status

`TASK_*` and `REASON_*` names live only here.

May import: task, events, logs, config/, healthcheck/. Never: local, cli.
"""
