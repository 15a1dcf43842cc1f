"""Apache Aurora's form of TaskInfo.data: the scheduler's Thrift AssignedTask.

    taskdata.py  `decode_task_data`: either form of TaskInfo.data, told apart by content
    binary.py    (pure) TBinaryProtocol bytes: `sniff`, and the bounds check every
                 AssignedTask passes before it is decoded
    wire.py      the decode with thriftpy2 (imported only here, only for Aurora's form)
                 from `aurora.thrift`, Aurora's structs and field ids
    task.py      (pure) `AuroraTask`: the decoded task as plain frozen values
    errors.py    (pure) `TaskDataError` and how a message shows the bytes received

Importing this package imports nothing else; thriftpy2 is loaded by the first AssignedTask.
"""
