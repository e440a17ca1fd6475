"""A scikit-learn classifier of iris flowers: [sepal length, sepal width, petal length, petal width] in cm -> species."""
# Served by batchd as a Python model (docs/coprocess.md), with Debian's
# python3-sklearn (1.2) on /usr/bin/python3:
#
#   build/batchd --model iris:python=examples/python/iris.py,interpreter=/usr/bin/python3
#
# load() trains a random forest once (the expensive part; or, given
# model=PATH, unpickles one you trained: joblib.dump(clf, PATH)); every
# worker's child shares it copy-on-write. run_batch() classifies a whole
# chunk with one predict_proba call.
import numpy as np


def load(params):
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    iris = load_iris()
    if "model" in params:
        import joblib
        clf = joblib.load(params["model"])
    else:
        # n_jobs=None: no thread pool (batchd forks this process afterwards)
        clf = RandomForestClassifier(n_estimators=int(params.get("trees", "50")),
                                     random_state=int(params.get("seed", "0")))
        clf.fit(iris.data, iris.target)
    return {"clf": clf, "names": [str(n) for n in iris.target_names]}


def run_batch(state, items):
    outs = [None] * len(items)
    rows, where = [], []
    for i, item in enumerate(items):
        if (isinstance(item, list) and len(item) == 4 and
                all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)):
            rows.append(item)
            where.append(i)
        else:
            outs[i] = ValueError("expected [sepal length, sepal width, petal length, "
                                 "petal width] in cm: 4 numbers")
    if rows:
        probs = state["clf"].predict_proba(np.asarray(rows, dtype=np.float64))
        for i, p in zip(where, probs):
            outs[i] = {"species": state["names"][int(p.argmax())], "probabilities": p}
    return outs
