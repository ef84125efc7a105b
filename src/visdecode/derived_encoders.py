"""Image encoders whose embeddings are a fixed transform of another encoder's embeddings.

A gLocal encoder is its backbone followed by an affine transform of the backbone's embedding.
Its embeddings are therefore computed from the backbone's cached embeddings (rule
`derive_embeddings`), without a second pass over the images; the published code runs the
backbone over every image once per encoder. The pair (backbone, gLocal) costs one pass.

Plain data without torch, so that the workflow reads it when it builds the DAG
(rules/common.smk); `visdecode.image_encoders` builds its registry entries from it.
"""

# aligned name: (the backbone encoder, the transform's folder in LukasMut/gLocal)
GLOCAL = {
    "glocal_clip_vitl14": ("clip_vitl14", "clip_ViT-L/14/visual"),
    "glocal_clip_rn50": ("clip_rn50", "clip_RN50/visual"),
    "glocal_openclip_vitl14_laion2b": (
        "openclip_vitl14_laion2b",
        "OpenCLIP_ViT-L-14_laion2b_s32b_b82k/visual",
    ),
    "glocal_openclip_vitl14_laion400m": (
        "openclip_vitl14_laion400m",
        "OpenCLIP_ViT-L-14_laion400m_e32/visual",
    ),
    "glocal_dino_vitb16": ("dino_vitb16", "dino-vit-base-p16/norm"),
    "glocal_dino_vitb8": ("dino_vitb8", "dino-vit-base-p8/norm"),
    "glocal_dinov2_vitb14": ("dinov2_vitb14", "dinov2-vit-base-p14/norm"),
    "glocal_dinov2_vitl14": ("dinov2_vitl14", "dinov2-vit-large-p14/norm"),
}

# derived encoder: the encoder whose embeddings it transforms
BACKBONE = {name: backbone for name, (backbone, _) in GLOCAL.items()} | {
    "synth_resnet18_glocal": "synth_resnet18",
}

# The null-alignment control for real data (config controls.null_alignment): `null_<aligned>`
# is the aligned encoder's transform with its directions drawn at random (its singular vectors
# replaced by seeded random orthogonal ones, its singular values kept): a change of the
# backbone's space as large as the alignment's, but carrying no human judgement.
NULL = {f"null_{aligned}": aligned for aligned in BACKBONE}
BACKBONE |= {null: BACKBONE[aligned] for null, aligned in NULL.items()}


def with_backbones(encoders) -> list[str]:
    """The encoders plus the backbones their derived ones need, sorted."""
    return sorted(set(encoders) | {BACKBONE[e] for e in encoders if e in BACKBONE})
