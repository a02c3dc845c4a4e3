"""MLflow pyfunc for a registered scregnet model ("models from code": nothing is pickled).

Input: a table with columns `tf` and `target` of gene symbols (the registered signature;
`Gene1`, `Gene2` are accepted when the model is called without schema enforcement).
Symbols are matched case-insensitively. Output: the same pairs, upper-cased, with
`score` = P(edge). Works with `mlflow models serve` (see README, "Serving").

Bad input (a missing column, an empty symbol, a gene the model was not trained on) raises
`MlflowException` with error code INVALID_PARAMETER_VALUE and a message naming the column or
the genes, so the scoring server answers HTTP 400 with that message (any other exception
becomes a generic "unexpected error" there, with the reason only in a stack trace).
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model


class ScRegNetPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: scores a table of (tf, target) pairs with the bundled model."""

    def load_context(self, context) -> None:
        """Read the bundle from the model's artifacts (checksums verified)."""
        from scregnet.serialize import ModelBundle

        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Scores of the input pairs; bad input raises INVALID_PARAMETER_VALUE (HTTP 400)."""
        cols = {str(c).lower(): c for c in model_input.columns}
        tf_col = cols.get("tf") or cols.get("gene1")
        target_col = cols.get("target") or cols.get("gene2")
        if tf_col is None or target_col is None:
            missing = [name for name, col in (("tf", tf_col), ("target", target_col)) if col is None]
            raise MlflowException.invalid_parameter_value(
                f"missing column(s) {missing}: expected columns tf,target (or Gene1,Gene2); "
                f"got {list(model_input.columns)}"
            )
        for col in (tf_col, target_col):
            empty = model_input[col].isna().to_numpy() | (model_input[col].astype(str).str.strip() == "").to_numpy()
            if empty.any():
                rows = [int(i) for i in empty.nonzero()[0][:10]]
                raise MlflowException.invalid_parameter_value(f"column {col!r} has empty gene symbols at rows {rows}")
        tfs = model_input[tf_col].astype(str).str.strip().str.upper().tolist()
        targets = model_input[target_col].astype(str).str.strip().str.upper().tolist()
        try:
            scores = self.bundle.score_symbols(tfs, targets)
        except KeyError as exc:  # unknown genes: the caller's input, not a server fault
            raise MlflowException.invalid_parameter_value(str(exc.args[0])) from exc
        return pd.DataFrame({"tf": tfs, "target": targets, "score": scores})


set_model(ScRegNetPyfunc())
