"""Frozen model configuration: text, vision, region and tokenizer sections.

Every geometry is derived from these fields (patch grid, prefix length, context); no module
hard-codes the sizes of the real model. Revision-specific behaviour (mask shape, GELU form,
crop scheme, size bins, templates) is configuration too, so older revisions are profiles of
the same code (see ``moonlet.profiles``). ``config.json`` is read and written by
``moonlet.checkpoints.config_json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

GELU_KINDS = ("tanh", "exact")
CROP_SCHEMES = ("overlap", "single", "grid")
STEM_KINDS = ("linear", "conv")
POSITION_TABLES = ("learned", "sincos")
SIZE_BIN_KINDS = ("log", "linear")


class ConfigError(ValueError):
    """A configuration that cannot describe a valid model."""


@dataclass(frozen=True)
class TextConfig:
    """Phi-1.5 style decoder."""

    dim: int = 2048
    ff_dim: int = 8192
    n_layers: int = 24
    vocab_size: int = 51200
    max_context: int = 2048
    n_heads: int = 32
    n_kv_heads: int = 32
    rope_theta: float = 10000.0
    partial_rotary_factor: float = 0.5
    layer_norm_eps: float = 1e-5
    gelu: str = "tanh"
    # Attention over BOS + image is bidirectional (2025 revisions) or causal (2024).
    prefix_bidirectional: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def validate(self) -> None:
        if self.dim % self.n_heads:
            raise ConfigError(f"text.dim {self.dim} is not divisible by text.n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"text.n_heads {self.n_heads} is not a multiple of text.n_kv_heads {self.n_kv_heads}")
        if self.rotary_dim % 2 or not 0 < self.rotary_dim <= self.head_dim:
            raise ConfigError(f"rotary dim {self.rotary_dim} must be even and within head dim {self.head_dim}")
        if self.gelu not in GELU_KINDS:
            raise ConfigError(f"text.gelu must be one of {GELU_KINDS}, got {self.gelu!r}")


@dataclass(frozen=True)
class VisionConfig:
    """SigLIP trunk, crop scheme and projection MLP."""

    enc_dim: int = 1152
    enc_patch_size: int = 14
    enc_n_layers: int = 27
    enc_ff_dim: int = 4304
    enc_n_heads: int = 16
    proj_out_dim: int = 2048
    proj_inner_dim: int = 8192
    crop_size: int = 378
    in_channels: int = 3
    max_crops: int = 12
    overlap_margin: int = 4
    layer_norm_eps: float = 1e-5
    gelu: str = "tanh"
    # "overlap": global crop + overlapping local tiles (2025); "single": one stretched crop (2024-03);
    # "grid": global view + up to grid_max × grid_max non-overlapping tiles (2024-05 … 2024-08).
    crop_scheme: str = "overlap"
    resample: str = "lanczos"
    grid_max: int = 2
    grid_min_side: int = 512  # images whose longer side is below this get a single tile
    # Small-model options for training from scratch (the defaults are SigLIP's, as every release has):
    # "conv": stride-2 3x3 convolutions of ``stem_channels`` widths, then the patch projection over
    # what remains of each patch; "linear": one projection of the raw patch.
    stem: str = "linear"
    stem_channels: tuple[int, ...] = ()
    stem_depth: int = 1  # 3x3 convolutions per stem stage: the stride-2 one, then residual stride-1 ones
    coord_channels: bool = False  # append the normalised x and y of each pixel as two channels (CoordConv)
    patch_norm: bool = False  # LayerNorm on the patch features before the position table is added
    # "learned": a trained table only; "sincos": a fixed 2-D sin-cos table (unit scale) plus the trained one.
    position_table: str = "learned"

    @property
    def stem_in_channels(self) -> int:
        """Channels the stem sees: the image's, plus two coordinate channels with CoordConv."""
        return self.in_channels + (2 if self.coord_channels else 0)

    @property
    def stem_stride(self) -> int:
        """Downsampling of the conv stem before the patch projection (1 without one)."""
        return 2 ** len(self.stem_channels) if self.stem == "conv" else 1

    @property
    def grid_size(self) -> int:
        """Patches per side of one crop."""
        return self.crop_size // self.enc_patch_size

    @property
    def n_patches(self) -> int:
        return self.grid_size**2

    @property
    def patch_dim(self) -> int:
        """Inputs of the patch projection: a patch of the stem's output, flattened channel-major."""
        channels = self.stem_channels[-1] if self.stem == "conv" else self.stem_in_channels
        return channels * (self.enc_patch_size // self.stem_stride) ** 2

    @property
    def head_dim(self) -> int:
        return self.enc_dim // self.enc_n_heads

    @property
    def proj_in_dim(self) -> int:
        """Global features, plus pooled local features when the scheme has tiles."""
        return self.enc_dim * (1 if self.crop_scheme == "single" else 2)

    def validate(self) -> None:
        if self.crop_size % self.enc_patch_size:
            raise ConfigError(
                f"vision.crop_size {self.crop_size} is not a multiple of enc_patch_size {self.enc_patch_size}"
            )
        if self.enc_dim % self.enc_n_heads:
            raise ConfigError(f"vision.enc_dim {self.enc_dim} is not divisible by enc_n_heads {self.enc_n_heads}")
        if self.crop_scheme not in CROP_SCHEMES:
            raise ConfigError(f"vision.crop_scheme must be one of {CROP_SCHEMES}, got {self.crop_scheme!r}")
        if self.gelu not in GELU_KINDS:
            raise ConfigError(f"vision.gelu must be one of {GELU_KINDS}, got {self.gelu!r}")
        if self.crop_scheme == "overlap" and 2 * self.overlap_margin >= self.grid_size:
            raise ConfigError("vision.overlap_margin leaves no usable window per crop")
        if self.stem not in STEM_KINDS:
            raise ConfigError(f"vision.stem must be one of {STEM_KINDS}, got {self.stem!r}")
        if (self.stem == "conv") != bool(self.stem_channels):
            raise ConfigError("vision.stem_channels must be given exactly when vision.stem is 'conv'")
        if self.stem_depth < 1:
            raise ConfigError(f"vision.stem_depth must be at least 1, got {self.stem_depth}")
        if self.enc_patch_size % self.stem_stride:
            raise ConfigError(
                f"vision.enc_patch_size {self.enc_patch_size} is not a multiple of the conv stem's stride "
                f"{self.stem_stride} ({len(self.stem_channels)} stride-2 convolutions)"
            )
        if self.position_table not in POSITION_TABLES:
            raise ConfigError(f"vision.position_table must be one of {POSITION_TABLES}, got {self.position_table!r}")


@dataclass(frozen=True)
class RegionConfig:
    """Coordinate and size heads for detect and point."""

    dim: int = 2048
    coord_feat_dim: int = 256
    coord_out_dim: int = 1024
    size_feat_dim: int = 512
    size_out_dim: int = 2048
    inner_dim: int = 8192
    size_bins: str = "log"
    enabled: bool = True

    @property
    def n_coord_bins(self) -> int:
        return self.coord_out_dim

    @property
    def n_size_bins(self) -> int:
        return self.size_out_dim // 2

    def validate(self) -> None:
        if self.size_bins not in SIZE_BIN_KINDS:
            raise ConfigError(f"region.size_bins must be one of {SIZE_BIN_KINDS}, got {self.size_bins!r}")
        if self.coord_feat_dim % 2 or self.size_feat_dim % 4 or self.size_out_dim % 2:
            raise ConfigError("region feature dims must split into cos/sin halves (and two size axes)")


@dataclass(frozen=True)
class Templates:
    """Prompt token ids per skill (they follow the image prefix)."""

    caption: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    query_prefix: tuple[int, ...] = ()
    query_suffix: tuple[int, ...] = ()
    detect_prefix: tuple[int, ...] = ()
    detect_suffix: tuple[int, ...] = ()
    point_prefix: tuple[int, ...] = ()
    point_suffix: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenizerConfig:
    bos_id: int = 0
    eos_id: int = 0
    answer_id: int = 3
    thinking_id: int = 4
    coord_id: int = 5
    size_id: int = 6
    start_ground_points_id: int = 7
    end_ground_id: int = 9
    templates: Templates = field(default_factory=Templates)
    # Ids appended after the query suffix (md2 doubles the answer id: "... 3, 3").
    query_answer_ids: tuple[int, ...] = (3,)
    # Leading space before the question / object text.
    question_space: bool = False
    object_space: bool = True
    # Ids whose logits are masked at every decode step after the first.
    masked_after_first: tuple[int, ...] = (3,)
    # Hub repo of the tokenizer when the checkpoint's own tokenizer.json belongs to another era.
    hub_repo: str | None = None
    # 2024 revisions build prompts from text instead of template ids:
    # "ids" uses ``templates``; "text" formats ``text_templates`` and tokenizes the result.
    prompt_style: str = "ids"
    text_templates: Mapping[str, str] = field(default_factory=dict)
    image_open_text: str = ""  # text tokenized between BOS and the image embeddings
    stop_text: str = ""  # if set, generation stops at ANY id of this text (kept in the output)
    legacy_cleanup: bool = False  # HF clean-up of spaces, drop a trailing "<" or "<END", strip


@dataclass(frozen=True)
class GenerationDefaults:
    max_tokens: int = 768
    temperature: float = 0.5
    top_p: float = 0.3
    max_objects: int = 50


@dataclass(frozen=True)
class MoondreamConfig:
    text: TextConfig = field(default_factory=TextConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    region: RegionConfig = field(default_factory=RegionConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    generation: GenerationDefaults = field(default_factory=GenerationDefaults)
    profile: str = "2025-06-21"
    dtype: str = "bfloat16"

    @property
    def prefix_len(self) -> int:
        """BOS plus one embedding per image patch."""
        return 1 + self.vision.n_patches

    def validate(self) -> MoondreamConfig:
        self.text.validate()
        self.vision.validate()
        self.region.validate()
        if self.vision.proj_out_dim != self.text.dim:
            raise ConfigError(f"vision.proj_out_dim {self.vision.proj_out_dim} must equal text.dim {self.text.dim}")
        if self.region.enabled and self.region.dim != self.text.dim:
            raise ConfigError(f"region.dim {self.region.dim} must equal text.dim {self.text.dim}")
        if self.prefix_len >= self.text.max_context:
            raise ConfigError(f"image prefix {self.prefix_len} does not fit the context {self.text.max_context}")
        return self
