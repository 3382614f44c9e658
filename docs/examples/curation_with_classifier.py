"""The dataset-curation lab (multiple annotators + a classifier), end to end with crowdbayes.

Same simulated data (seed 123), same classifier (distance-weighted KNN, 5-fold
out-of-sample probabilities, trained on the lab's tie-broken majority vote); then
majority vote, Dawid-Skene, CROWDLAB and the Bayesian CROWDLAB side by side: consensus
accuracy against the hidden truth, and each method's 10 worst annotators (the truly bad
ones are A0041-A0050). Needs scikit-learn. With ``--nuts`` it also samples the Bayesian
CROWDLAB's posterior with NUTS (about a minute more): credible intervals for the
classifier's weight, the annotators' accuracy and the least certain tasks.

    .venv/bin/python docs/examples/curation_with_classifier.py [--nuts]
"""

import sys
import warnings

import numpy as np
import pandas as pd

from crowdbayes.datasets.curation_lab import (
    BAD_ANNOTATORS,
    knn_pred_probs,
    lab_majority_vote,
    make_data,
)
from crowdbayes.engines import NUTS
from crowdbayes.inference.nuts import ConvergenceWarning
from crowdbayes.models.bayesian_crowdlab import BayesianCrowdLab
from crowdbayes.models.crowdlab import CrowdLab
from crowdbayes.models.dawid_skene import DawidSkene
from crowdbayes.models.majority_vote import MajorityVote

data = make_data(sample_size=300)
labels, truth = data.labels, data.truth  # wide: items x annotators, as in the lab
pred_probs = knn_pred_probs(data.X, lab_majority_vote(labels))
print(f"classifier held-out accuracy: {np.mean(pred_probs.argmax(axis=1) == truth):.4f}")

# long format, and the classifier's probabilities as a DataFrame indexed by task
long = labels.stack().dropna().rename("label").rename_axis(["task", "worker"]).reset_index()
probs = pd.DataFrame(pred_probs, index=labels.index, columns=[0, 1, 2])

mv = MajorityVote().fit(long)
ds = DawidSkene().fit(long)
cl = CrowdLab().fit(long, pred_probs=probs)
bcl = BayesianCrowdLab().fit(long, pred_probs=probs)

truth_s = pd.Series(truth, index=labels.index)
worst = {
    "majority vote": mv.annotator_quality().sort_values("agreement").index[:10],
    "Dawid-Skene": ds.annotator_quality().sort_values("accuracy").index[:10],
    "CROWDLAB": cl.annotator_quality().sort_values("quality").index[:10],
    "Bayesian CROWDLAB": bcl.annotator_quality().sort_values("accuracy").index[:10],
}
rows = []
for name, model in [
    ("majority vote", mv),
    ("Dawid-Skene", ds),
    ("CROWDLAB", cl),
    ("Bayesian CROWDLAB", bcl),
]:
    acc = float((model.predict().loc[truth_s.index] == truth_s).mean())
    found = len(set(worst[name]) & set(BAD_ANNOTATORS))
    rows.append({"method": name, "consensus accuracy": round(acc, 4), "bad in worst 10": found})
print(pd.DataFrame(rows).to_string(index=False))
for name, who in worst.items():
    print(f"{name:>18}: {' '.join(who)}")

print("\nCROWDLAB annotator stats (cleanlab's annotator_stats):")
print(cl.annotator_stats().head(10).round(4).to_string())
print(f"\nBayesian CROWDLAB: classifier weight (inverse temperature) {bcl.classifier_weight_:.2f}")
cols = ["accuracy", "accuracy_lower", "accuracy_upper", "n_labels", "agreement"]
print(bcl.annotator_quality().sort_values("accuracy")[cols].head(10).round(3).to_string())
w = bcl.classifier_weight(interval=0.9)
print(f"EM classifier weight, 90% Laplace interval: [{w['lower']:.2f}, {w['upper']:.2f}]")

if "--nuts" in sys.argv:
    # NUTS from the EM estimate; few draws for a demo (use the defaults, 4 x 1000, for real)
    engine = NUTS(num_warmup=300, num_samples=300, num_chains=2, seed=0)
    nuts = BayesianCrowdLab(inference=engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # short chains; see convergence_
        nuts.fit(long, pred_probs=probs)
    acc = float((nuts.predict().loc[truth_s.index] == truth_s).mean())
    w = nuts.classifier_weight(interval=0.9)
    print(f"\nBayesian CROWDLAB by NUTS (2 x 300 draws): consensus accuracy {acc:.4f}")
    print(
        f"classifier weight {w['estimate']:.2f}, 90% interval [{w['lower']:.2f}, {w['upper']:.2f}]"
    )
    print(nuts.convergence_.round(3).to_string())
    print(nuts.annotator_quality(interval=0.9).sort_values("accuracy")[cols].head(10).round(3))
    tu = nuts.task_uncertainty(interval=0.9).sort_values("probability")
    print(tu[["label", "probability", "probability_lower", "probability_upper"]].head(5).round(3))
