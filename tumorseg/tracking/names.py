"""How a registered model set is named and chosen: role names, aliases, the selector."""

from __future__ import annotations

from dataclasses import dataclass, fields

from tumorseg.networks.roles import ALL_ROLES

#: Alias put on every newly registered version.
CANDIDATE = "candidate"
#: Alias of the set that batch segmentation and serving use by default.
CHAMPION = "champion"


class ModelNotFoundError(LookupError):
    """A registered model, alias or version asked for does not exist in the registry."""


class RegistryUnreachableError(ModelNotFoundError):
    """The tracking server did not answer at all: say so at once, instead of letting
    MLflow's client retry for minutes."""


class InconsistentModelSetError(ModelNotFoundError):
    """The versions found for the roles do not belong to one registered model set."""


@dataclass(frozen=True)
class ModelNames:
    """Registered model name of each network role."""

    classifier: str = "tumorseg-classifier"
    graynet: str = "tumorseg-graynet"
    fcn: str = "tumorseg-fcn"
    baseline: str = "tumorseg-baseline"

    @classmethod
    def with_prefix(cls, prefix: str) -> ModelNames:
        """``PREFIX-classifier``, ``PREFIX-graynet``, … (the jobs' ``--model-prefix``)."""
        return cls(*(f"{prefix}-{f.name}" for f in fields(cls)))

    def for_role(self, role: str) -> str:
        if role not in ALL_ROLES:
            raise ValueError(f"unknown network role {role!r}; known: {list(ALL_ROLES)}")
        return getattr(self, role)


if tuple(f.name for f in fields(ModelNames)) != ALL_ROLES:  # pragma: no cover - a new role
    raise ImportError("ModelNames needs one field per network role of tumorseg.networks.ROLES")


@dataclass(frozen=True)
class ModelSelector:
    """Which registered set: an alias or a version number, never both.

    Neither given means the ``champion`` alias. Version N means version N of each
    fused model (a training job registers them together). Every job and the Serve
    app choose their models with this one type.
    """

    alias: str | None = None
    version: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None:
            if self.alias is not None:
                raise ValueError(
                    f"give an alias or a version, not both "
                    f"(alias={self.alias!r}, version={self.version!r})"
                )
            text = str(self.version).strip()
            if not text.isdigit() or int(text) < 1:
                raise ValueError(f"a model version is a positive integer, got {self.version!r}")
            object.__setattr__(self, "version", str(int(text)))
        elif self.alias is None:
            object.__setattr__(self, "alias", CHAMPION)
        elif not str(self.alias).strip():
            raise ValueError("a model alias must not be empty")

    @property
    def by_version(self) -> bool:
        return self.version is not None

    def describe(self) -> str:
        return f"version {self.version}" if self.by_version else f"alias {self.alias}"
