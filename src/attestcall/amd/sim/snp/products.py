"""The simulated AMD product lines: Milan, Genoa and Turin, and their TCB_VERSION layouts.

Milan and Genoa: byte 0 BOOT_LOADER, 1 TEE, 2-5 reserved, 6 SNP, 7 MICROCODE.
Turin: byte 0 FMC, 1 BOOT_LOADER, 2 TEE, 3 SNP, 4-6 reserved, 7 MICROCODE; its chip id
(the VCEK's hwid) is 8 bytes, the report's 64-byte CHIP_ID field zero past them.
"""

from __future__ import annotations

from dataclasses import dataclass

from attestcall.amd.formats import report as snp
from attestcall.errors import AttestcallError


class UnknownProduct(AttestcallError, ValueError):
    """A product line the simulator does not model."""


@dataclass(frozen=True)
class Tcb:
    """One TCB_VERSION, by component (security patch levels, 0-255)."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None  # Turin only

    def __post_init__(self) -> None:
        for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and 0 <= value <= 255):
                raise ValueError(f"TCB component {name} = {value!r} is not in 0..255")

    def describe(self) -> str:
        fmc = f"fmc {self.fmc}, " if self.fmc is not None else ""
        return (f"{fmc}bootloader {self.bootloader}, tee {self.tee}, snp {self.snp}, "
                f"microcode {self.microcode}")

    def encode(self, product: str) -> int:
        """The u64 a report holds for this TCB in ``product``'s layout."""
        raw = bytearray(8)
        if product == snp.TURIN:
            if self.fmc is None:
                raise ValueError("a Turin TCB has an FMC component")
            raw[0], raw[1], raw[2], raw[3], raw[7] = (self.fmc, self.bootloader, self.tee,
                                                      self.snp, self.microcode)
        else:
            if self.fmc is not None:
                raise ValueError(f"a {product} TCB has no FMC component")
            raw[0], raw[1], raw[6], raw[7] = self.bootloader, self.tee, self.snp, self.microcode
        return int.from_bytes(raw, "little")


@dataclass(frozen=True)
class Product:
    name: str  # the KDS product line, "Milan"
    product_name: str  # the VCEK's product-name extension, "Milan-B0"
    struct_version: int  # the VCEK's struct-version extension
    cpuid: tuple[int, int, int]  # family, model, stepping (report version 3 on)
    hwid_size: int  # 64, or 8 on Turin
    default_tcb: Tcb
    firmware: tuple[int, int, int]  # major, minor, build of the simulated SNP firmware

    @property
    def key(self) -> str:
        return self.name.lower()


PRODUCTS: dict[str, Product] = {
    "milan": Product("Milan", "Milan-B0", 0, (0x19, 0x01, 0x00), 64,
                     Tcb(bootloader=4, tee=0, snp=22, microcode=213), (1, 55, 22)),
    "genoa": Product("Genoa", "Genoa-B1", 0, (0x19, 0x11, 0x01), 64,
                     Tcb(bootloader=9, tee=0, snp=23, microcode=72), (1, 55, 38)),
    "turin": Product("Turin", "Turin", 1, (0x1A, 0x02, 0x01), 8,
                     Tcb(bootloader=1, tee=1, snp=1, microcode=9, fmc=1), (1, 58, 3)),
}


def product(name: str) -> Product:
    """The product called ``name`` (case-insensitive)."""
    try:
        return PRODUCTS[name.lower()]
    except (KeyError, AttributeError):
        raise UnknownProduct(f"unknown AMD product {name!r}; choose one of "
                             f"{', '.join(PRODUCTS)}") from None
