"""Apache Aurora's form of TaskInfo.data: the scheduler's Thrift AssignedTask.

    taskdata.py  `decode_task_data`: either form of TaskInfo.data, told apart by content
    binary.py    (pure) TBinaryProtocol bytes: `sniff`, and the bounds check every
                 AssignedTask passes before it is decoded
    idl.py       (pure) `aurora.thrift`, Aurora's structs and field ids, read into the
                 field tables the decoder walks by
    wire.py      the decode: TBinaryProtocol by those tables, then into `AuroraTask`
    task.py      (pure) `AuroraTask`: the decoded task as plain frozen values
    errors.py    (pure) `TaskDataError` and how a message shows the bytes received

Importing this package imports nothing else; the IDL is read by the first AssignedTask.
"""
