/*
 * The part of Apache Aurora's scheduler API (0.22.0, namespace org.apache.aurora.gen) that
 * reaches an executor: the AssignedTask the scheduler puts into Mesos' TaskInfo.data, in
 * TBinaryProtocol. Field ids, types and defaults are Aurora's; structs and fields the
 * executor never sees are left out. Declaration order is Aurora's too (TaskConfig's is not
 * id order), so an encoder that walks this file writes what Aurora's Python encoders write.
 * A decoder skips any field id not named here, by its wire type.
 */

/** Deprecated in Aurora: the role again, as the task's owner. There is no field 1. */
struct Identity {
  2: string user
}

struct ValueConstraint {
  /** true: the host must have none of the values. */
  1: bool negated
  2: set<string> values
}

struct LimitConstraint {
  /** at most this many active tasks on hosts with the same attribute value */
  1: i32 limit
}

union TaskConstraint {
  1: ValueConstraint value
  2: LimitConstraint limit
}

/** A placement constraint on a Mesos agent attribute. */
struct Constraint {
  1: string name
  2: TaskConstraint constraint
}

/** Free key/value pairs shown in the UI; the scheduler copies them into TaskInfo labels. */
struct Metadata {
  1: string key
  2: string value
}

/** role/environment/name: the job a task belongs to. */
struct JobKey {
  1: string role
  2: string environment
  3: string name
}

/** One more file for the Mesos fetcher (Mesos' CommandInfo.URI). */
struct MesosFetcherURI {
  1: string value
  2: optional bool extract
  3: optional bool cache
  4: optional string outputFile
}

/** Which executor runs the task, and what it is given: Thermos gets the client's job JSON. */
struct ExecutorConfig {
  1: string name
  2: string data
}

enum Mode {
  RW = 1
  RO = 2
}

struct Volume {
  1: string containerPath
  2: string hostPath
  3: Mode mode
}

struct DockerImage {
  1: string name
  2: string tag
}

struct AppcImage {
  1: string name
  2: string imageId
}

/** A filesystem image for the Mesos containerizer. */
union Image {
  1: DockerImage docker
  2: AppcImage appc
}

/** The Mesos containerizer: the default; with an image, the task runs inside it. */
struct MesosContainer {
  1: optional Image image
  2: optional list<Volume> volumes
}

struct DockerParameter {
  1: string name
  2: string value
}

/** The Docker containerizer. */
struct DockerContainer {
  1: string image
  2: optional list<DockerParameter> parameters
}

union Container {
  1: MesosContainer mesos
  2: DockerContainer docker
}

/** One resource a task asks for: exactly one field is set. */
union Resource {
  1: double numCpus
  2: i64 ramMb
  3: i64 diskMb
  4: string namedPort
  5: i64 numGpus
}

struct PartitionPolicy {
  1: bool reschedule
  2: optional i64 delaySecs
}

struct PercentageSlaPolicy {
  1: double percentage
  2: i64 durationSecs
}

struct CountSlaPolicy {
  1: i64 count
  2: i64 durationSecs
}

struct CoordinatorSlaPolicy {
  1: string coordinatorUrl
  2: string statusKey
}

union SlaPolicy {
  1: PercentageSlaPolicy percentageSlaPolicy
  2: CountSlaPolicy countSlaPolicy
  3: CoordinatorSlaPolicy coordinatorSlaPolicy
}

/** What the task is (ids 1-6, 8-10, 12, 14-16, 19, 21, 24, 26 and 31 are retired). */
struct TaskConfig {
  28: JobKey job
  17: Identity owner
   7: bool isService
  11: i32 priority
  13: i32 maxTaskFailures
  18: optional bool production
  30: optional string tier
  32: set<Resource> resources
  20: set<Constraint> constraints
  33: optional set<MesosFetcherURI> mesosFetcherUris
  22: optional map<string, string> taskLinks
  23: optional string contactEmail
  25: optional ExecutorConfig executorConfig
  27: optional set<Metadata> metadata
  34: optional PartitionPolicy partitionPolicy
  35: optional SlaPolicy slaPolicy
  29: Container container = { "mesos": {} }
}

/** The task the scheduler assigned to one agent: TaskInfo.data. */
struct AssignedTask {
  1: string taskId
  2: string slaveId
  3: string slaveHost
  4: TaskConfig task
  5: map<string, i32> assignedPorts
  6: i32 instanceId
}
