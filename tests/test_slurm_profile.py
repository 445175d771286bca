"""sweep/slurm.py without a cluster: time limits, memory sizes, the cluster profile and its precedence, the sbatch
parameters of each stage, --print (needs no Slurm), and the flags that belong to one backend only."""
import pytest

from conftest import ROOT
from helpers import make_fake
from sweep import local as sweep, slurm
from utils.errors import UserError
from sweep.jobs import Stage


@pytest.mark.parametrize("value,minutes", [(90, 90), ("90", 90), ("1:30", 2), ("01:30:00", 90), ("2-00:00:00", 2880),
                                           ("1-12", 2160), ("1-0:30", 1470)])
def test_slurm_time_formats(value, minutes):
    assert slurm.parse_time(value, "--time") == minutes


@pytest.mark.parametrize("value", ["soon", "0", "1h", "-5", "1:2:3:4", ""])
def test_a_bad_time_is_one_error(value):
    with pytest.raises(UserError, match="is not a Slurm time limit"):
        slurm.parse_time(value, "--time")


def parse(*argv):
    return sweep.get_args_parser().parse_intermixed_args(["x.sh", "--backend", "slurm", *argv])


def test_profile_flags_and_overrides_have_a_precedence(tmp_path):
    prof = tmp_path / "c.yaml"
    prof.write_text("partition: gpu\ntime: '2:00:00'\ngpus_per_job: 2\nmem_per_job: 32G\n"
                    "programs:\n  test.py: {time: 30, cpus_per_job: 2}\nsteps: {partition: cpu}\n"
                    "setup: ['module load cuda']\n")
    res = slurm.resources(parse("--profile", str(prof), "--cpus_per_job", "6", "--qos", "high"))
    cond, ev, rep = Stage(1, "condense_reg.py", True), Stage(2, "test.py", True), Stage(3, "evaluation.report", False)
    assert slurm.stage_resources(res, cond) == dict(slurm.DEFAULTS, partition="gpu", time="2:00:00", gpus_per_job=2,
                                                    mem_per_job="32G", cpus_per_job=6, qos="high")
    assert slurm.stage_resources(res, ev)["time"] == 30 and slurm.stage_resources(res, ev)["cpus_per_job"] == 6
    r = slurm.stage_resources(res, rep)  # steps: no GPU, one CPU, the steps' partition; the sizing flags skip them
    assert (r["gpus_per_job"], r["cpus_per_job"], r["partition"], r["qos"]) == (0, 1, "cpu", "high")
    p = slurm.sbatch_parameters(res, ev, "mdc_table1", "123")
    assert p["job_name"] == "mdc_table1-s02-test.py" and p["time"] == 30 and p["gpus_per_node"] == 2
    assert p["additional_parameters"] == {"requeue": True, "dependency": "afterok:123", "kill-on-invalid-dep": "yes"}
    assert p["setup"][-1] == "module load cuda" and p["setup"][0].startswith(f"export PYTHONPATH={ROOT}")
    assert "gpus_per_node" not in slurm.sbatch_parameters(res, rep, "t", None)


@pytest.mark.parametrize("text,message", [
    ("partitions: gpu\n", "unknown key 'partitions'"),
    ("gpus_per_job: two\n", "gpus_per_job: 'two' is not a whole number"),
    ("cpus_per_job: 0\n", "cpus_per_job: 0 is out of range"),
    ("mem_per_job: lots\n", "mem_per_job: 'lots' is not a memory size"),
    ("time: forever\n", "time: 'forever' is not a Slurm time limit"),
    ("programs: [test.py]\n", "programs must be a mapping"),
    ("programs:\n  test.py: {gpus: 1}\n", "programs: test.py: give a mapping of"),
    ("setup: module load cuda\n", "setup must be a list of shell lines"),
    ("- a\n- b\n", "holds a YAML list, not a mapping"),
    ("partition: [\n", "is not valid YAML"),
])
def test_a_bad_profile_is_one_error(tmp_path, text, message):
    prof = tmp_path / "c.yaml"
    prof.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        slurm.resources(parse("--profile", str(prof)))
    with pytest.raises(UserError, match="cannot read the cluster profile"):
        slurm.resources(parse("--profile", str(tmp_path / "none.yaml")))


def test_bad_flags_name_the_backend_they_belong_to(tmp_path, capsys):
    script = tmp_path / "s.sh"
    script.write_text("true\n")
    for argv, message in ((["--partition", "gpu"], "--partition applies to --backend slurm"),
                          (["--print"], "--print applies to --backend slurm"),
                          (["--backend", "slurm", "--gpus", "0,1"], "--gpus/--cpu_slots choose the local backend"),
                          (["--backend", "slurm", "--gpus_per_job", "-1"], "gpus_per_job: -1 is out of range"),
                          (["--backend", "slurm", "--mem_per_job", "0G"], "is not a memory size")):
        assert sweep.cli([str(script), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_print_shows_the_job_graph_without_slurm(tmp_path, capsys, monkeypatch):
    script, work = make_fake(tmp_path)
    monkeypatch.setenv("WORKDIR", str(work))
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin:/bin")
    assert sweep.cli([str(script), "--backend", "slurm", "--print", "--time", "90", "--gpus_per_job", "1"]) == 0
    out = capsys.readouterr().out
    assert "fake: 6 commands in 3 stages, 0 done before" in out and "nothing submitted (--print)" in out
    assert "stage 1: cond.py (2 jobs in parallel): 1 job array of 2 tasks (at most 64 at once)\n" in out
    assert "stage 3: report.py (1 step, serial): 1 job running 1 step in order, after stage 2 (afterok)" in out
    assert "--job-name=fake-s01-cond.py --time=90 --cpus-per-task=4 --gpus-per-node=1 --signal=USR2@120 --requeue\n" in out
    assert "--dependency=afterok:<stage 1> --kill-on-invalid-dep=yes" in out
    assert not (work / "raid").exists()
