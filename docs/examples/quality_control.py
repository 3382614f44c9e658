"""Quality control of a labelling batch: gold tasks, uncertainty, suspicious tasks, a report.

The crowd-kit notebook's analysis with crowdbayes, on a bundled dataset where 10% of
the tasks serve as gold (control) tasks. For a platform export, load it with
``ann = crowdbayes.io.read_platform_export("assignments.tsv")`` (gold from its GOLDEN:
column, inputs kept) and fit ``GoldMajorityVote().fit(ann)``; or run
``crowdbayes report assignments.tsv --out report.html``.

Run: ``python docs/examples/quality_control.py [OUTPUT_FOLDER]``
"""

import sys
from pathlib import Path

import crowdbayes as cb
from crowdbayes import metrics, plots
from crowdbayes.models.gold_majority_vote import GoldMajorityVote
from crowdbayes.qc import suspicious_tasks
from crowdbayes.report import build_report

out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
labels, truth = cb.datasets.load("bluebirds")
gold = truth.sample(frac=0.1, random_state=0)

# aggregate with gold: skill = accuracy on gold tasks, then a skill-weighted vote
gmv = GoldMajorityVote().fit(labels, gold=gold)
print(gmv.skills_.describe().round(3))

# uncertainty and consistency for gold and ordinary tasks, and per task
print(metrics.quality_summary(gmv).round(3).to_string())
print(metrics.task_metrics(gmv)[["uncertainty", "consistency", "gold"]].round(3))
print("crowd-kit's uncertainty:", metrics.uncertainty(labels, gmv.skills_, aggregate=True))

# histograms, gold and ordinary tasks apart
plots.quality_histograms(gmv).write_html(out / "histograms.html")

# suspicious gold tasks, with the labels given and why they were flagged
print(suspicious_tasks(gmv, consistency_below=0.5, tasks="gold").round(3).to_string())

# all of it on one page (summary, plots, annotators, suspicious tasks)
build_report(gmv, out / "report.html")
