"""An undefined symbol read for what it says: demangled (c++filt or the fallback), the namespace and the
wrong side, and the installed distribution that owns the library, found from a real site-packages."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envcheck.probes import symbols
from envcheck.probes.symbols import missing_cuda_library, namespace_of, nested_name, owner_of, undefined_symbol


def fake_site(root: Path, name: str = "flash_attn", version: str = "2.5.8") -> tuple[Path, str]:
    """A site-packages holding one real (if tiny) distribution: its dist-info with METADATA and a RECORD
    that lists the extension module, as pip writes them."""
    site = root / "lib" / "python3.11" / "site-packages"
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    module = "flash_attn_2_cuda.cpython-311-x86_64-linux-gnu.so"
    (site / module).write_bytes(b"\x7fELF")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text(f"{module},,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n")
    return site, module


@pytest.mark.parametrize(
    ("symbol", "name", "namespace"),
    [
        ("_ZN3c104cuda9SetDeviceEi", "c10::cuda::SetDevice", "c10"),
        ("_ZN5torch3jit17parseSchemaOrNameERKSsb", "torch::jit::parseSchemaOrName", "torch"),
        ("_ZNK2at6Tensor4sizeEl", "at::Tensor::size", "at"),
        (
            "_ZN6caffe28TypeMeta21_typeMetaDataInstanceIfEEPKNS_6detail12TypeMetaDataEv",
            "caffe2::TypeMeta::_typeMetaDataInstance",
            "caffe2",
        ),
    ],
)
def test_the_fallback_reads_the_nested_name_without_cxxfilt(monkeypatch, symbol, name, namespace) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    assert nested_name(symbol) == name
    assert namespace_of(symbol, symbols.demangle(symbol)) == namespace
    assert undefined_symbol(f"x.so: undefined symbol: {symbol}")["wrong_side"] == "torch"


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="no c++filt on PATH")
def test_cxxfilt_demangles_the_whole_signature() -> None:
    assert symbols.demangle("_ZN3c104cuda9SetDeviceEi") == "c10::cuda::SetDevice(int)"


def test_the_owner_is_found_from_the_path_under_a_site_packages(tmp_path) -> None:
    site, module = fake_site(tmp_path)
    facts = undefined_symbol(f"ImportError: {site}/{module}: undefined symbol: _ZN3c104cuda9SetDeviceEi")
    assert facts["distribution"] == {"name": "flash_attn", "version": "2.5.8", "site_packages": str(site)}
    assert facts["wrong_side"] == "torch"
    assert "pip install --no-build-isolation --force-reinstall --no-deps flash_attn" in facts["fix"]


def test_a_library_no_distribution_lists_has_no_owner(tmp_path) -> None:
    site, _ = fake_site(tmp_path)
    assert owner_of(f"{site}/other_ext.so") is None


def test_a_bare_file_name_is_looked_up_in_this_pythons_distributions() -> None:
    """The message often names only the file; this Python's own distributions are searched by name
    (here: a module that click really ships)."""
    import click

    owner = owner_of(Path(click.__file__).name)
    assert owner is not None  # some installed distribution ships an __init__.py
    assert owner_of("no_such_module_anywhere.cpython-311-x86_64-linux-gnu.so") is None


def test_cuda_python_and_abi_sides() -> None:
    nvjitlink = undefined_symbol(
        "libcusparse.so.12: undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12"
    )
    assert nvjitlink["wrong_side"] == "cuda" and nvjitlink["symbol"] == "__nvJitLinkComplete_12_4"
    assert undefined_symbol("m.so: undefined symbol: PyUnicode_AsUTF8")["wrong_side"] == "python"
    assert (
        "pre-C++11" in undefined_symbol("_C.abi3.so: undefined symbol: _ZN5torch3jit17parseSchemaOrNameERKSsb")["abi"]
    )


def test_a_missing_cuda_runtime_names_its_major() -> None:
    facts = missing_cuda_library("ImportError: libcudart.so.11.0: cannot open shared object file: No such file")
    assert facts["library"] == "libcudart.so.11.0" and facts["cuda_major"] == 11 and facts["wrong_side"] == "cuda"
