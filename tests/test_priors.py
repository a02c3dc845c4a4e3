"""Prior files in the formats labs download (scregnet.priors): pairs CSV/TSV, GMT, ChIP-Atlas,
gzipped or not, and the errors that name the file, the line and what was expected."""

from __future__ import annotations

import gzip
import logging
import re

import numpy as np
import pandas as pd
import pytest

from scregnet.config import DataConfig
from scregnet.data import load_dataset, read_priors
from scregnet.errors import DataError
from scregnet.priors import PRIOR_FILE_SUFFIXES, gmt_tf_symbol, read_prior_file, read_prior_files

GMT = (
    "POU5F1 ChIP-seq ESC\t\tNANOG\tsox2\t\tKLF4\n"  # Enrichr style: empty description, an empty field
    "# a comment line\n"
    "\n"
    "SOX2_20726797_ChIP-Seq_ESCs_Mouse\thttp://example.org/sox2\tPou5f1\tNanog\n"
)
# ChIP-Atlas target genes: Target_genes, {TF}|Average, one column per experiment, STRING.
CHIP_ATLAS = (
    "Target_genes\tPOU5F1|Average\tSRX100|hESC H1\tSRX101|hESC H9\tSTRING\n"
    "NANOG\t812\t800\t824\t999\n"
    "SOX2\t405.5\t400\t411\t0\n"
    "KLF4\t12\t0\t24\t0\n"
)


def write(path, text: str, gz: bool = False):
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(df["tf"], df["target"]))


def error_of(path, **options) -> str:
    with pytest.raises(DataError) as info:
        read_prior_file(path, **options)
    return str(info.value)


# ------------------------------------------------------------------------------------------
# formats


@pytest.mark.parametrize("gz", [False, True])
def test_csv_and_tsv_pairs_with_both_header_styles(tmp_path, gz):
    a = write(tmp_path / "a.csv", "tf,target\nPou5f1,nanog\nSOX2, KLF4 \n", gz)
    b = write(tmp_path / "b.tsv", "Gene1\tGene2\tType\nGATA1\tTAL1\t+\n", gz)
    da, db = read_prior_file(a), read_prior_file(b)
    assert pairs(da) == [("POU5F1", "NANOG"), ("SOX2", "KLF4")]  # upper-cased, stripped
    assert list(da.columns) == ["tf", "target", "score", "source", "line"]
    assert da["score"].isna().all() and list(da["line"]) == [2, 3] and set(da["source"]) == {str(a)}
    assert pairs(db) == [("GATA1", "TAL1")]
    assert read_priors(a).equals(da)  # the old entry point reads the same table


def test_tflink_and_omnipath_headers_pick_symbol_columns(tmp_path):
    tflink = write(
        tmp_path / "tflink.tsv",
        "UniprotID.TF\tUniprotID.Target\tNCBI.GeneID.TF\tNCBI.GeneID.Target\tName.TF\tName.Target\tDetection.method\n"
        "Q01860\tQ9H9S0\t5460\t79923\tPOU5F1\tNANOG\tchip\n",
    )
    omni = write(
        tmp_path / "omnipath.tsv",
        "source\ttarget\tsource_genesymbol\ttarget_genesymbol\tis_directed\nQ01860\tQ9H9S0\tPOU5F1\tNANOG\t1\n",
    )
    assert pairs(read_prior_file(tflink)) == [("POU5F1", "NANOG")]
    assert pairs(read_prior_file(omni)) == [("POU5F1", "NANOG")]


def test_trrust_raw_download_without_header(tmp_path):
    path = write(tmp_path / "trrust_rawdata.human.tsv", "AATF\tBAX\tRepression\t22909821\nAATF\tCDKN1A\tUnknown\t1;2\n")
    df = read_prior_file(path)
    assert pairs(df) == [("AATF", "BAX"), ("AATF", "CDKN1A")] and list(df["line"]) == [1, 2]


@pytest.mark.parametrize("gz", [False, True])
def test_gmt_library_one_tf_per_line(tmp_path, gz):
    df = read_prior_file(write(tmp_path / "chea.gmt", GMT, gz))
    assert pairs(df) == [
        ("POU5F1", "NANOG"),
        ("POU5F1", "SOX2"),
        ("POU5F1", "KLF4"),
        ("SOX2", "POU5F1"),
        ("SOX2", "NANOG"),
    ]
    assert list(df["line"]) == [1, 1, 1, 4, 4]  # comment and blank lines are counted, not read
    assert df["score"].isna().all()


def test_gmt_set_name_to_tf_rule():
    assert gmt_tf_symbol("POU5F1 ChIP-seq ESC") == "POU5F1"
    assert gmt_tf_symbol("SOX2_20726797_ChIP-Seq_ESCs_Mouse") == "SOX2"
    assert gmt_tf_symbol("NKX2-1 ENCODE hg19") == "NKX2-1"  # hyphens belong to the symbol


def test_gmt_downloaded_as_txt_is_recognised_by_content(tmp_path):
    path = write(tmp_path / "ChEA_2022.txt", GMT)  # Enrichr names its downloads .txt
    assert len(read_prior_file(path)) == 5
    assert len(read_prior_file(path, format="gmt")) == 5


def test_gmt_weights_give_scores_and_min_score(tmp_path):
    path = write(tmp_path / "w.gmt", "STAT3 ENCODE\t\tJUNB,0.9\tFOS,0.2\tMYC,1.0\n")
    df = read_prior_file(path)
    assert pairs(df) == [("STAT3", "JUNB"), ("STAT3", "FOS"), ("STAT3", "MYC")]
    np.testing.assert_allclose(df["score"], [0.9, 0.2, 1.0])
    assert pairs(read_prior_file(path, min_score=0.5)) == [("STAT3", "JUNB"), ("STAT3", "MYC")]


@pytest.mark.parametrize("gz", [False, True])
def test_chip_atlas_tf_from_header_score_from_average(tmp_path, gz):
    df = read_prior_file(write(tmp_path / "whatever.tsv", CHIP_ATLAS, gz))
    assert pairs(df) == [("POU5F1", "NANOG"), ("POU5F1", "SOX2"), ("POU5F1", "KLF4")]
    np.testing.assert_allclose(df["score"], [812, 405.5, 12])  # the Average column, not STRING
    assert list(df["line"]) == [2, 3, 4]
    kept = read_prior_file(write(tmp_path / "whatever.tsv", CHIP_ATLAS, gz), min_score=100)
    assert pairs(kept) == [("POU5F1", "NANOG"), ("POU5F1", "SOX2")] and list(kept["line"]) == [2, 3]


def test_chip_atlas_tf_from_file_name_and_from_tf_option(tmp_path):
    bare = CHIP_ATLAS.replace("POU5F1|Average", "Average")
    named = write(tmp_path / "Pou5f1.5.tsv", bare, gz=True)  # mouse-style name, gzipped
    assert set(read_prior_file(named)["tf"]) == {"POU5F1"}
    anonymous = write(tmp_path / "targets.tsv", bare)
    assert "pass --tf" in error_of(anonymous)
    assert set(read_prior_file(anonymous, tf="Sox2")["tf"]) == {"SOX2"}
    # --tf wins over the header
    assert set(read_prior_file(write(tmp_path / "x.tsv", CHIP_ATLAS), tf="OCT4")["tf"]) == {"OCT4"}


def test_chip_atlas_with_thousands_of_experiment_columns(tmp_path):
    n = 3000  # a header of ~60 kB: longer than the sniffed prefix of the file
    header = "\t".join(["Target_genes", "GATA1|Average"] + [f"SRX{i:07d}|K-562" for i in range(n)] + ["STRING"])
    rows = ["\t".join([g, str(s)] + ["0"] * n + ["0"]) for g, s in (("TAL1", 90), ("KLF1", 5))]
    df = read_prior_file(write(tmp_path / "GATA1.1.tsv", "\n".join([header, *rows]) + "\n", gz=True), min_score=10)
    assert pairs(df) == [("GATA1", "TAL1")]


def test_pairs_table_of_one_tf_takes_tf_option(tmp_path):
    path = write(tmp_path / "targets.csv", "target,score\nNANOG,3\nSOX2,1\n")
    df = read_prior_file(path, tf="pou5f1", min_score=2)
    assert pairs(df) == [("POU5F1", "NANOG")]


def test_several_files_of_mixed_formats(tmp_path):
    files = [
        write(tmp_path / "a.csv", "tf,target\nGATA1,TAL1\n"),
        write(tmp_path / "b.gmt", GMT, gz=True),
        write(tmp_path / "POU5F1.1.tsv", CHIP_ATLAS),
    ]
    df = read_prior_files(files)
    assert len(df) == 1 + 5 + 3 and df["source"].nunique() == 3


def test_watcher_suffixes_cover_every_format_and_gzip():
    assert all(s == s.lower() for s in PRIOR_FILE_SUFFIXES)
    for base in (".csv", ".tsv", ".txt", ".gmt"):
        assert base in PRIOR_FILE_SUFFIXES and base + ".gz" in PRIOR_FILE_SUFFIXES
    assert "POU5F1.10.tsv.gz".lower().endswith(PRIOR_FILE_SUFFIXES)


# ------------------------------------------------------------------------------------------
# errors: file, line and what was expected


def test_missing_columns_name_what_was_found(tmp_path):
    msg = error_of(write(tmp_path / "p.csv", "regulator_id,whatever\nA,B\n"))
    assert msg.startswith(f"{tmp_path / 'p.csv'}: no tf column") and "found ['regulator_id', 'whatever']" in msg
    msg = error_of(write(tmp_path / "q.tsv", "TF\tgoal\nA\tB\n"))
    assert msg.startswith(f"{tmp_path / 'q.tsv'}: no target column") and "found ['TF', 'goal']" in msg


@pytest.mark.parametrize("sep", [";", "|"])
def test_wrong_delimiter_is_named_in_the_header(tmp_path, sep):
    msg = error_of(write(tmp_path / "p.csv", f"tf{sep}target\nA{sep}B\n"))
    assert "no tf column; expected a header with 'tf,target'" in msg
    assert f"found ['tf{sep}target']" in msg and "the delimiter looks wrong" in msg and repr(sep) in msg


def test_wrong_delimiter_in_the_rows_is_named_too(tmp_path):
    # The issue-14 case: a comma header over ';' rows used to give only "row 2: empty TF or target".
    msg = error_of(write(tmp_path / "p.csv", "tf,target\nA,B\nC;D\n"))
    assert re.search(
        r"p\.csv: row 3: empty TF or target gene name \(the line is split by ';'.*delimiter looks wrong", msg
    )


def test_empty_names_in_a_pairs_table(tmp_path):
    assert "row 3: empty TF or target gene name" in error_of(write(tmp_path / "p.tsv", "tf\ttarget\nA\tB\n\tC\n"))


def test_text_score_with_min_score_is_an_error(tmp_path):
    path = write(tmp_path / "p.csv", "tf,target,score\nA,B,0.5\nA,C,high\n")
    msg = error_of(path, min_score=0.1)
    assert "p.csv: row 3, column 'score': 'high' is not a number; --min-score needs a numeric score" in msg


def test_text_score_without_min_score_is_a_warning_not_silence(tmp_path, caplog):
    path = write(tmp_path / "p.csv", "tf,target,score\nA,B,0.5\nA,C,high\n")
    with caplog.at_level(logging.WARNING, logger="scregnet.priors"):
        df = read_prior_file(path)
    assert len(df) == 2 and df["score"].isna().all()
    assert "row 3, column 'score': 'high' is not a number" in caplog.text


def test_min_score_without_scores_is_an_error(tmp_path):
    assert "--min-score needs a score column" in error_of(write(tmp_path / "p.csv", "tf,target\nA,B\n"), min_score=1)
    assert "this GMT library has none" in error_of(write(tmp_path / "p.gmt", GMT), min_score=1)


def test_gmt_set_without_targets_names_the_line(tmp_path):
    path = write(tmp_path / "bad.gmt", "POU5F1 ChIP\t\tNANOG\nSOX2 ChIP\tdescription\t\t\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: line 2: gene set 'SOX2 ChIP' has no target genes")
    assert "expected: set name, description, then target genes, tab-separated" in msg


def test_gmt_with_spaces_instead_of_tabs_says_so(tmp_path):
    assert "the line has no tab" in error_of(write(tmp_path / "bad.gmt", "POU5F1 ChIP NANOG SOX2\n"))


def test_gmt_empty_set_name(tmp_path):
    assert "line 2: empty gene-set name" in error_of(write(tmp_path / "bad.gmt", "A\t\tB\n\t\tNANOG\n", gz=True))


def test_binary_and_garbled_content(tmp_path):
    binary = tmp_path / "p.csv"
    binary.write_bytes(b"tf,target\nA,B\n\x00\x01\x02\x03")
    assert "line 3: binary content" in error_of(binary)
    xlsx = tmp_path / "priors.tsv"
    xlsx.write_bytes(b"PK\x03\x04" + bytes(100))
    assert "ZIP archive (an Excel workbook?)" in error_of(xlsx)
    garbled = tmp_path / "g.gmt"
    garbled.write_bytes(b"A\t\tB\nC\t\t\xff\xfeD\n")
    assert "line 2: not UTF-8 text" in error_of(garbled)
    late = tmp_path / "late.csv"  # beyond the sniffed prefix: found while parsing
    late.write_bytes(b"tf,target\n" + b"A,B\n" * 20_000 + b"C,\xff\n")
    assert "line 20002: not UTF-8 text" in error_of(late)


def test_truncated_and_empty_gzip(tmp_path):
    rng = np.random.default_rng(0)  # random names, so the compressed stream is long
    genes = [f"G{i}" for i in rng.integers(0, 10**6, 50_000)]
    texts = {
        "p.csv": "tf,target\n" + "".join(f"{g},B\n" for g in genes),
        "p.gmt": "".join(f"{g} ChIP\t\tA\tB\n" for g in genes),
        "POU5F1.1.tsv": "Target_genes\tPOU5F1|Average\tSTRING\n" + "".join(f"{g}\t1\t0\n" for g in genes),
    }
    for name, text in texts.items():
        full = write(tmp_path / name, text, gz=True)
        assert len(read_prior_file(full)) == (100_000 if name.endswith(".gmt") else 50_000)
        full.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        assert "truncated or corrupt" in error_of(full), name
    assert "file is empty after decompression" in error_of(write(tmp_path / "e.csv", "", gz=True))
    assert "file is empty" in error_of(write(tmp_path / "e2.csv", ""))


def test_chip_atlas_errors_name_the_line(tmp_path):
    path = write(tmp_path / "POU5F1.1.tsv", CHIP_ATLAS.replace("405.5", "n/a?"))
    assert "line 3, column 'POU5F1|Average': 'n/a?' is not a number" in error_of(path, min_score=1)
    path = write(tmp_path / "POU5F1.5.tsv", CHIP_ATLAS.replace("SOX2\t", "\t"))
    assert "line 3: empty gene name in column 'Target_genes'" in error_of(path)
    assert "not a ChIP-Atlas target-genes table" in error_of(
        write(tmp_path / "p.tsv", "tf\ttarget\n"), format="chip-atlas"
    )


def test_tf_option_on_a_file_that_names_its_tfs_is_an_error(tmp_path):
    assert "drop --tf" in error_of(write(tmp_path / "p.csv", "tf,target\nA,B\n"), tf="X")
    assert "drop --tf" in error_of(write(tmp_path / "p.gmt", GMT), tf="X")


# ------------------------------------------------------------------------------------------
# end to end: h5ad + GMT priors through the loader and validation


def test_gmt_priors_load_end_to_end_and_validation_names_gmt_lines(synthetic, tmp_path):
    from scregnet.validation import validate_dataset

    path = tmp_path / "cells.h5ad"
    synthetic.adata.write_h5ad(path)
    graph = synthetic.label_graph()
    by_tf: dict[str, list[str]] = {}
    for a, b in graph.edges:
        by_tf.setdefault(graph.genes[a], []).append(graph.genes[b])
    lines = [f"{tf.lower()} ChIP-seq\t\t" + "\t".join(t) for tf, t in by_tf.items()]
    write(tmp_path / "lib.gmt", "\n".join(lines) + "\n", gz=True)
    ds = load_dataset(DataConfig(h5ad=path, priors=[tmp_path / "lib.gmt.gz"], prior_format="gmt"))
    np.testing.assert_array_equal(ds.label_graph().edges, graph.edges)

    lines.append("NOTAGENE ChIP-seq\t\t" + graph.genes[0])  # line 9 names an unmeasured TF
    write(tmp_path / "lib2.gmt", "\n".join(lines) + "\n")
    ds = load_dataset(DataConfig(h5ad=path, priors=[tmp_path / "lib2.gmt"]))
    report = validate_dataset(ds)
    assert any(f"lib2.gmt: row {len(lines)}, column 'tf': TF gene 'NOTAGENE'" in p for p in report.problems), report
