"""The artifacts scenario, run against the backend stand-in with W&B's
service (which proves the stand-in) and with ours (compared with it): log a
nested directory and wait, a table, the same content again, one file
changed; use and download in a second run; link in a third."""
import os, wandb
os.makedirs("data/sub", exist_ok=True)
open("data/a.txt", "w").write("hello artifacts\n")
open("data/sub/b.bin", "wb").write(bytes(range(256)) * 12)
run = wandb.init(project="arts", id="artrun1")
art = wandb.Artifact("ds", "dataset", metadata={"k": 1}, description="two files")
art.add_dir("data")
run.log_artifact(art, aliases=["best"], tags=["t1"])
art.wait()
print("FIRST", art.version, art.digest)
run.log({"tbl": wandb.Table(columns=["x", "y"], data=[[1, 2], [3, 4]])})
again = wandb.Artifact("ds", "dataset")
again.add_dir("data")
run.log_artifact(again)
again.wait()
print("AGAIN", again.version)
open("data/a.txt", "w").write("changed\n")
changed = wandb.Artifact("ds", "dataset")
changed.add_dir("data")
run.log_artifact(changed)
changed.wait()
print("CHANGED", changed.version)
run.finish()
run = wandb.init(project="arts", id="artrun2")
used = run.use_artifact("ds:latest")
path = used.download(root="downloaded")
print("USED", used.version, open(os.path.join(path, "a.txt")).read().strip(),
      len(open(os.path.join(path, "sub/b.bin"), "rb").read()))
run.finish()
staging = os.path.expanduser("~/.local/share/wandb/artifacts/staging")
print("STAGED", len(os.listdir(staging)) if os.path.isdir(staging) else 0)
run = wandb.init(project="arts", id="artrun3")
linked = run.link_artifact(run.use_artifact("ds:v0"), "standin/arts/portfolio", aliases=["prod"])
print("LINKED", linked.version if linked else None)
# The service's own link request (the 0.31.0 SDK has it, but links
# through the public API).
h = run._interface.deliver_link_artifact(used, "portfolio2", ["staging"], "standin", "arts")
r = h.wait_or(timeout=60).response.link_artifact_response
print("LINKREQ", r.version_index, repr(r.error_message))
run.finish()
