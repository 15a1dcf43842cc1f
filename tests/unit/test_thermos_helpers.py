"""Thermos' task helpers (`config/schema/helpers.py`) as Aurora's `schema_helpers.py` has them,
each rule stated where tests/unit/test_schema.py's two-task cases could not tell it: which task
of three gives the other fields, each pair of neighbours ordered, keywords that override, an
unset value counted as 0, and each refusal's words."""
from __future__ import annotations

import pytest
from pystachio import Integer

from config.schema import (
    Constraint,
    Empty,
    Options,
    Resources,
    SequentialTask,
    SimpleTask,
    Task,
    Tasks,
    Units,
    combine_tasks,
    concat_tasks,
    java_options,
    order,
    python_options,
)
from tests.support.configs import plain, process

ZERO = {"cpu": 0.0, "ram": 0, "disk": 0, "gpu": 0}


def three_tasks() -> tuple[Task, Task, Task]:
    return (Task(name="one", processes=[process("a")], constraints=order("a"), finalization_wait=50,
                 resources=Resources(cpu=1, ram=10, disk=100)),
            Task(name="two", processes=[process("b")], finalization_wait=20,
                 resources=Resources(cpu=2, ram=30, disk=50)),
            Task(name="three", processes=[process("c")], finalization_wait=5,
                 resources=Resources(cpu=0.5, ram=20, disk=70)))


def test_combine_takes_the_other_fields_from_the_last_of_three_and_merges_constraints():
    combined = plain(combine_tasks(*three_tasks()))
    assert combined["name"] == "three"
    assert [p["name"] for p in combined["processes"]] == ["a", "b", "c"]
    assert combined["constraints"] == [{"order": ["a"]}]  # the first task's, kept
    assert combined["finalization_wait"] == 50  # the longest, not the last task's
    assert combined["resources"] == {"cpu": 3.5, "ram": 60, "disk": 220, "gpu": 0}


def test_concat_orders_each_task_before_the_next_and_takes_the_last_of_three_s_fields():
    joined = plain(concat_tasks(*three_tasks()))
    assert joined["name"] == "three"
    assert joined["constraints"] == [{"order": ["a"]}, {"order": ["a", "b"]}, {"order": ["b", "c"]}]
    assert joined["finalization_wait"] == 75
    assert joined["resources"] == {"cpu": 2.0, "ram": 30, "disk": 100, "gpu": 0}


@pytest.mark.parametrize("helper", [combine_tasks, concat_tasks])
def test_keywords_override_what_the_tasks_give(helper):
    assert plain(helper(*three_tasks(), name="both", max_failures=3))["name"] == "both"
    assert plain(helper(*three_tasks(), max_failures=3))["max_failures"] == 3


@pytest.mark.parametrize("helper", [combine_tasks, concat_tasks])
def test_no_tasks_is_an_empty_task(helper):
    assert helper().get() == Task().get()


def test_a_task_without_resources_counts_as_none():
    bare = Task(name="bare", processes=[process("x")])
    assert plain(combine_tasks(bare, three_tasks()[0]))["resources"] == {"cpu": 1.0, "ram": 10, "disk": 100, "gpu": 0}
    assert plain(Units.optional_resources(Empty)) == ZERO
    assert Units.optional_resources(Empty) == Resources(cpu=0, ram=0, disk=0)


def test_the_sum_of_no_resources_is_zero_in_each_dimension():
    assert Units.resources_sum() == Resources(cpu=0, ram=0, disk=0)
    assert plain(Units.resources_sum(Resources(cpu=1, ram=2, disk=3))) == {"cpu": 1.0, "ram": 2, "disk": 3, "gpu": 0}


def test_a_dimension_left_unset_counts_as_zero():
    assert plain(Units.resources_sum(Resources(cpu=1), Resources(ram=5))) == {"cpu": 1.0, "ram": 5, "disk": 0, "gpu": 0}


def test_an_unset_finalization_wait_counts_as_zero():
    assert Units.safe_get(Empty) == 0
    assert Units.finalization_wait_sum([Empty, Integer(3)]) == 3
    assert Units.finalization_wait_max([Empty]) == 0
    assert Units.finalization_wait_max([]) == 0


def test_a_simple_task_is_named_for_its_process():
    assert SimpleTask("hello", "echo hi").name().get() == "hello"


def test_a_sequential_task_takes_a_task_given_whole():
    given = {"name": "seq", "processes": [process("x"), process("y")]}
    assert plain(SequentialTask(given))["constraints"] == [{"order": ["x", "y"]}]
    assert plain(SequentialTask(given))["name"] == "seq"


def test_a_task_with_constraints_is_refused_as_sequential_in_aurora_s_words():
    with pytest.raises(ValueError) as caught:
        Tasks.sequential(Task(processes=[process("x")], constraints=[Constraint(order=["x"])]))
    assert str(caught.value) == "Cannot turn a Task with existing constraints into a SequentialTask."


def test_order_refuses_what_is_no_process_nor_name_naming_it():
    with pytest.raises(ValueError) as caught:
        order("a", 3)
    assert str(caught.value) == "order() takes Process objects or process names, not 3"


def test_options_refuse_what_is_no_flag_nor_map_naming_it():
    with pytest.raises(ValueError) as caught:
        java_options(3)
    assert str(caught.value) == "Got an unexpected argument to render_options: 3"


def test_a_one_letter_keyword_flag_takes_the_short_prefix():
    assert python_options(v=2, verbose=1) == "-v 2 --verbose 1"
    assert Options.render_options("-", "--", v=2) == ["-v 2"]
