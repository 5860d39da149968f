"""Numbers in a chapter's prose come from the run: `glue` them in, and `check` that nothing is typed.

A chapter computes a number in a cell and glues it (myst-nb's mechanism, without needing
myst-nb in the kernel):

    prose.glue("t5_gain_50", float(gain(refit.law, 0.5)))

and the prose pastes it with {glue:text}`t5_gain_50:.2f`. A re-executed book then cannot
say one thing while its output says another.

`check(text)` finds the numbers a chapter's prose still types by hand. A number (a run of
digits, in text or inline math) is allowed only when it is

- pasted by a `{glue:...}` role (removed before the check);
- in code, display math (the paper's equations), a link target, a citation or the
  "Try it" section (exercises choose their own inputs);
- structural: a reference such as "§3.3", "Table 7", "Fig. 1", "eq. 5", "App. C",
  "Observation 2", "Algorithm 1" (with lists like "eq. 4-6" and "Fig. 1 (left), 2, 3"), a
  year, a name such as T5, C4 or JFT-4B, an n:m pattern (2:4, n:8), a list enumerator
  "(2)", or the values 0 and 1;
- in a parenthesis that gives the paper's value: "(paper: 1.56x and 1.67x)";
- a value of the paper's grid (`GRID`: the sparsities 50%, 75%, 87.5%, 93.75% and 0.5 ...);
- in a sentence (or table row) labelled as the paper's: one that names the paper, a
  published table or an outside work (`PAPER_WORDS`) and says nothing of ours (`OURS`:
  we, our, ours, us, refit, bootstrap, this build, here). "Our refit gives 1.77x against the paper's 1.59x"
  names both, so both numbers must be glued.

`check_notebook(path)` applies it to the markdown cells of an executed notebook and also
reports what myst-nb would render empty or ambiguous, which it only warns about: a glue key
the prose pastes that the notebook's outputs do not hold; a `{glue:text}` value its format
spec cannot format (a numpy scalar glued with myst-nb's own `glue` is pasted as the text
`np.float64(0.88)`, which `:.2f` cannot format: use this module's `glue`); a key glued twice.
`python -m bigsparse_lib.prose [STAGE]` checks every executed chapter of a build (default
`_executed/toy`) and exits 1 listing what it found.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

GLUE_PREFIX = "application/papermill.record/"  # myst-nb's (and scrapbook's) mime prefix for glued values
GRID = frozenset({"0.5", "0.75", "0.875", "0.9375", "50%", "75%", "87.5%", "93.75%", "25%", "100%",
                  "95%", "5.6%"})  # the sparsities, the pruning ramp's ends, the confidence level of
# intervals, and §4.2's pruning budget (5.6% of pretraining)
PAPER_WORDS = re.compile(r"\bpaper|\bTable \d|\bpublished\b|\bprinted\b|\bHoffmann\b|\bEpoch\b|\bCerebras\b|"
                         r"\bChinchilla\b|\bLlama|\bKaplan\b|\bthe authors\b", re.I)
OURS = re.compile(r"\b(we|our|ours|us|refits?|bootstrap)\b|\bthis build\b|\bhere\b", re.I)
_REF_WORD = (r"(?:§|Sec\.|Section|Sections|Tables?|Figs?\.|Figures?|[Ee]qs?\.|App\.|Appendix|[Rr]ules?|[Ss]teps?|Chapter|"
             r"[Oo]bservations?|Algorithm)")
_REF_ITEM = r"\d+(?:\.\d+)*(?:\s*\((?:left|right|top|bottom|[a-z])\))?"
_REF = re.compile(rf"{_REF_WORD}\s*{_REF_ITEM}(?:\s*(?:,|and|or|-|–|to)\s*(?:{_REF_WORD}\s*)?{_REF_ITEM})*")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.\\])\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?%?")
_POWER_OF_TEN = re.compile(r"10\s*\^\s*(?:\{\s*-?\d+\s*\}|-?\d)")  # 10^{-3}: a unit of scale in math
_PATTERN = re.compile(r"(?<![\w.])(?:\d+|n):\d+\b")  # n:m sparsity patterns (2:4, n:8): names, not results
_ENUMERATOR = re.compile(r"\(\d\)")  # (1), (2): the items of a list in a sentence
_PAPER_ASIDE = re.compile(r"\((?:the )?paper(?:'s)?\b[^()]*\)", re.I)  # "(paper: 1.56x and 1.67x)"
_NAME_WITH_DIGITS = re.compile(r"\b[A-Za-z]+[-/]?\d+[A-Za-z0-9.\-]*")  # T5, C4, JFT-4B, GPT-3, Llama-2-7B, t5-base


@dataclass(frozen=True)
class Finding:
    where: str
    number: str  # the number typed, or the glue key at fault
    context: str
    what: str = "typed in prose"

    def __str__(self) -> str:
        return f"{self.where}: {self.number!r} {self.what}: ...{self.context}..."


def glue(name: str, value, display: bool = False) -> None:
    """Record `value` under `name` for {glue:text}`name` (myst-nb's `glue(..., display=False)`).

    numpy scalars become Python numbers, so that a format spec (`name:.2f`) applies.
    `display=True` also shows the value in the cell's output, as myst-nb's glue does.
    """
    import IPython
    import IPython.display as ipd

    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    bundle, metadata = IPython.core.formatters.format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    ipd.display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
    if display:
        ipd.display(value)


def _strip(text: str) -> str:
    """The prose only: without front matter, code, display math, roles' contents, links' targets, Try it."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    text = re.split(r"^## Try it\s*$", text, flags=re.M)[0]
    text = re.sub(r"^(```+|~~~+).*?^\1\s*$", " ", text, flags=re.S | re.M)   # code cells, fences, directives
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)                    # display math: the equations
    text = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " GLUED ", text)              # pasted from the run
    text = re.sub(r"\{[\w:]+\}`[^`]*`", " ", text)                           # cite, doc, ref, download ...
    text = re.sub(r"`[^`]*`", " ", text)                                      # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)                                  # link targets
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"^\s*\d+\.\s", " ", text, flags=re.M)                      # numbered-list markers
    return text


def _units(text: str) -> list[str]:
    """Sentences of the prose, and table rows as their own units."""
    units = []
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        if lines and all(line.lstrip().startswith("|") for line in lines):
            units.extend(lines)
        else:
            units.extend(re.split(r"(?<=[.!?])\s+(?=[A-Z*(\[])", " ".join(lines)))
    return units


def _allowed_number(token: str) -> bool:
    value = token.rstrip("%").replace(",", "")
    if token in GRID or value in ("0", "1"):
        return True
    return bool(re.fullmatch(r"(19[5-9]\d|20[0-4]\d)", value))  # a year


def check(text: str, where: str = "prose") -> list[Finding]:
    """Numbers typed into the prose of a chapter (MyST markdown) that should be glued; see the module docstring."""
    findings = []
    for unit in _units(_strip(text)):
        if PAPER_WORDS.search(unit) and not OURS.search(unit):
            continue  # labelled as the paper's (or an outside work's) number
        masked = _PAPER_ASIDE.sub(" ", unit)
        masked = _REF.sub(" ", masked)
        masked = _PATTERN.sub(" ", masked)
        masked = _ENUMERATOR.sub(" ", masked)
        masked = _NAME_WITH_DIGITS.sub(" ", masked)
        masked = _POWER_OF_TEN.sub(" ", masked)
        for m in _NUMBER.finditer(masked):
            if not _allowed_number(m.group()):
                start = max(m.start() - 50, 0)
                findings.append(Finding(where, m.group(), masked[start:m.end() + 30].strip()))
    return findings


_GLUE_ROLE = re.compile(r"\{glue(?::(\w+))?\}`([^`:]+)(?::([^`]*))?`")  # kind, key, format spec


def glue_keys(text: str) -> set[str]:
    """The keys the prose pastes with {glue}/{glue:text}/{glue:md} roles and directives."""
    directives = re.findall(r"^```\{glue(?::\w+)?\}\s+(\S+)", text, flags=re.M)
    return {key for _, key, _ in _GLUE_ROLE.findall(text)} | set(directives)


def glued_values(notebook) -> dict[str, list[str | None]]:
    """Key -> the glued text/plain of each output that glued it (None: no text/plain), in order."""
    values: dict[str, list[str | None]] = {}
    for cell in notebook.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            meta = out.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                text = out.get("data", {}).get(meta.get("mime_prefix", GLUE_PREFIX) + "text/plain")
                values.setdefault(meta["name"], []).append("".join(text) if isinstance(text, list) else text)
    return values


def text_roles(text: str) -> set[tuple[str, str]]:
    """(key, format spec) of every {glue:text} role in the prose ('' when it has none)."""
    return {(key, spec) for kind, key, spec in _GLUE_ROLE.findall(text) if kind == "text"}


def check_notebook(path: Path, where: str | None = None) -> list[Finding]:
    """`check` on an executed notebook's markdown, plus what myst-nb would paste blank or ambiguously:
    keys never glued, keys glued twice, {glue:text} values their format spec cannot format."""
    import nbformat
    from myst_nb.core.variables import format_plain_text  # what myst-nb runs on a {glue:text} role

    nb = nbformat.read(path, as_version=4)
    where = where or str(path)
    text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    findings = check(text, where)
    values = glued_values(nb)
    for key in sorted(glue_keys(text) - set(values)):
        findings.append(Finding(where, key, "{glue} key that no cell glued", "pasted, never glued"))
    for key, texts in sorted(values.items()):
        if len(texts) > 1:
            findings.append(Finding(where, key, f"glued {len(texts)} times: {', '.join(map(repr, texts))}",
                                    "glued twice"))
    for key, spec in sorted(text_roles(text)):
        plain = values.get(key, [None])[-1]
        if spec and plain is not None:
            try:
                format_plain_text(plain, spec)
            except (TypeError, ValueError) as exc:
                findings.append(Finding(where, key, f"{plain!r} with format {spec!r}: {exc}", "cannot be formatted"))
    return findings


def main(argv: list[str] | None = None) -> int:
    """`python -m bigsparse_lib.prose [STAGE]`: check the executed chapters of a build."""
    from bigsparse_lib import book

    args = sys.argv[1:] if argv is None else argv
    stage = Path(args[0]) if args else book.ROOT / "_executed" / "toy"
    notebooks = [stage / f"{name}.ipynb" for name in book.chapters(book.ROOT)]
    missing = [str(p) for p in notebooks if not p.is_file()]
    if missing:
        print(f"prose: not executed yet: {', '.join(missing)} (run `bigsparse book` first)", file=sys.stderr)
        return 2
    findings = [f for p in notebooks for f in check_notebook(p, p.relative_to(stage).as_posix())]
    for f in findings:
        print(f)
    print(f"prose: {len(findings)} finding(s) (numbers typed in the prose, glued values myst-nb cannot paste) "
          f"in {len(notebooks)} chapter(s) in {stage}",
          file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
