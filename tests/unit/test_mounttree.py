"""`mounttree`'s reading of /proc/self/mountinfo and its last check of the seal made one
mount at a time: which mount of the image's tree a task's process can reach, and which it
cannot (a mount with another stacked on its own mount point, and what is below it)."""
from __future__ import annotations

from executor.mesos.mounttree import Mount, first_unsealed

SEALED = "rw,nosuid,nodev,relatime"


def line(mount_id: int, parent: int, point: str, options: str = SEALED, optional: str = "") -> str:
    """A /proc/self/mountinfo line (its optional fields, `shared:N`, `master:N`, or none)."""
    return f"{mount_id} {parent} 0:{mount_id} / {point} {options} {optional}{'' if not optional else ' '}- tmpfs none rw\n"


def test_a_mount_point_s_escapes_and_optional_fields_are_read_as_the_kernel_writes_them():
    mount = Mount(line(70, 65, "/img/a\\040b/t\\011ab/n\\012l/back\\134slash/\u00fcn\u00efc\u00f6de", "rw,nosuid",
                       "shared:3 master:1"))
    assert (mount.id, mount.parent, mount.options) == (70, 65, {"rw", "nosuid"})
    assert mount.point == "/img/a b/t\tab/n\nl/back\\slash/\u00fcn\u00efc\u00f6de"
    assert Mount(line(71, 65, "/img/x", "ro,nodev")).options == {"ro", "nodev"}


def tree(*lines: str) -> list[Mount]:
    return [Mount(each) for each in lines]


def test_a_mount_hidden_under_another_on_its_own_mount_point_and_what_is_below_it_are_accepted():
    assert first_unsealed(tree(line(65, 1, "/img"), line(66, 65, "/img/opt", "rw,relatime"),
                               line(67, 66, "/img/opt/vol", "rw,relatime"), line(68, 66, "/img/opt"))) is None


def test_a_mount_stacked_on_a_hidden_one_is_the_one_reached_and_is_checked():
    # (was: taken as hidden too, its parent being hidden: the visible mount of a stack was
    # never checked)
    stacked = tree(line(65, 1, "/img"), line(66, 65, "/img/opt"), line(67, 66, "/img/opt", "rw,relatime"))
    assert first_unsealed(stacked) is stacked[2]
    three = tree(line(65, 1, "/img"), line(66, 65, "/img/opt"), line(67, 66, "/img/opt"),
                 line(68, 67, "/img/opt", "rw,nodev"), line(69, 67, "/img/opt/vol", "rw"))
    assert first_unsealed(three) is three[3]


def test_a_mount_on_the_tree_s_top_is_what_the_task_enters_and_is_checked():
    top = tree(line(65, 1, "/img"), line(66, 65, "/img", "rw,relatime"))
    assert first_unsealed(top) is top[1]


def test_an_unsealed_mount_in_reach_is_found_and_a_sealed_tree_passes():
    assert first_unsealed(tree(line(65, 1, "/img"), line(66, 65, "/img/opt"))) is None
    open_one = tree(line(65, 1, "/img"), line(66, 65, "/img/opt"), line(67, 66, "/img/opt/vol", "ro,nosuid"))
    assert first_unsealed(open_one) is open_one[2]
