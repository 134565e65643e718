"""The one registry helper (fexdata.registry) and the three registries built on it: models, eval sections,
input layouts. Each entry of each registry keeps its contract; the orders that users see are pinned."""
from __future__ import annotations

from pathlib import Path

import pytest

from fexdata.errors import FexError, LayoutError
from fexdata.ingest.sources import LAYOUTS
from fexdata.registry import Registry
from fextrain.evaluate.section import Section
from fextrain.evaluate.sections import SECTIONS
from fextrain.models import MODELS, UnknownModel, model_class
from _train_fixtures import TINY_ARCHS

DOCS = Path(__file__).resolve().parents[1] / "docs"


class _Oops(FexError):
    pass


def test_registry_registers_in_order_ranks_and_names_the_known_on_a_miss():
    reg: Registry[object] = Registry("thing", _Oops, "pick one of {known}", name_attr="name")

    @reg.register("b", rank=1)
    class B:
        pass

    @reg.register("a")
    class A:
        pass

    assert list(reg) == ["b", "a"] and reg["a"] is A and len(reg) == 2 and "b" in reg
    assert A.name == "a" and B.name == "b"
    assert reg.ranked() == ["a", "b"]
    with pytest.raises(_Oops, match="unknown thing 'c'; known: b, a") as err:
        reg.lookup("c")
    assert err.value.hint == "pick one of b, a"
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(object)


# ---------------------------------------------------------------- layouts


def test_layout_orders_are_unchanged():
    """--layout's choices and hints list the layouts in this order; `--layout auto` tries them in the second."""
    assert list(LAYOUTS) == ["studio", "jaffe", "ckplus", "kdef", "rafd", "oulu", "ferg", "mug", "folder", "csv"]
    assert LAYOUTS.ranked() == ["jaffe", "ckplus", "kdef", "rafd", "oulu", "ferg", "mug", "studio", "csv", "folder"]


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_is_documented(name):
    module = LAYOUTS.lookup(name)
    assert module.NAME == name and module.EXPECTS and callable(module.detect) and callable(module.scan)
    assert module.__doc__
    assert f"\n## {name} — " in (DOCS / "layouts.md").read_text()  # its own section of docs/layouts.md


def test_unknown_layout_is_a_layout_error():
    with pytest.raises(LayoutError, match="unknown layout 'mmi'; known: studio, jaffe"):
        LAYOUTS.lookup("mmi")


# ---------------------------------------------------------------- eval sections

REPORT_ORDER = ["judge", "edit_strength", "sharpness", "identity", "identity_transfer", "collapse", "colour", "outside_judge",
                "paired_truth", "frechet",
                "discriminator", "figures", "intensity", "augment", "fer_folds"]


def test_section_order_is_the_report_order():
    assert list(SECTIONS) == REPORT_ORDER


def test_headline_sections_in_headline_order():
    """The headline takes its numbers in registry order: these sections, and only these, contribute to it."""
    contributing = [name for name, cls in SECTIONS.items() if cls.headline is not Section.headline]
    assert contributing == ["judge", "edit_strength", "sharpness", "identity", "identity_transfer", "collapse", "colour", "outside_judge",
                           "paired_truth"]


@pytest.mark.parametrize("name", REPORT_ORDER)
def test_every_section_has_its_name_a_title_and_docs(name):
    cls = SECTIONS.lookup(name)
    assert issubclass(cls, Section) and cls.name == name
    assert isinstance(cls.title, str) and cls.title
    assert cls.compute is not Section.compute and cls.html is not Section.html  # what every section must write
    assert name in (DOCS / "eval.md").read_text()


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_has_its_name_a_summary_and_a_tiny_arch(name):
    cls = model_class(name)
    assert cls.name == name and cls.summary
    assert name in TINY_ARCHS  # the registry-parametrised model tests need one
    assert name in (DOCS / "models.md").read_text()


def test_unknown_model_names_the_models():
    with pytest.raises(UnknownModel, match="unknown model 'nope'; known: degan, exprgan, fexgan") as err:
        model_class("nope")
    assert "fex train --help" in err.value.hint
