"""MLflow pyfunc for a registered scregnet model ("models from code": nothing is pickled).

Input: a table with columns `tf` and `target` of gene symbols (the registered signature;
`Gene1`, `Gene2` are accepted when the model is called without schema enforcement).
Output: the same pairs with `score` = P(edge). Works with `mlflow models serve`.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model


class ScRegNetPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from scregnet.serialize import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        cols = {str(c).lower(): c for c in model_input.columns}
        tf_col = cols.get("tf") or cols.get("gene1")
        target_col = cols.get("target") or cols.get("gene2")
        if tf_col is None or target_col is None:
            raise ValueError(f"expected columns tf,target (or Gene1,Gene2); got {list(model_input.columns)}")
        tfs = model_input[tf_col].astype(str).str.upper().tolist()
        targets = model_input[target_col].astype(str).str.upper().tolist()
        return pd.DataFrame({"tf": tfs, "target": targets, "score": self.bundle.score_symbols(tfs, targets)})


set_model(ScRegNetPyfunc())
