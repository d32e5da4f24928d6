"""The network: SigLIP-style vision encoder, Phi-style text decoder, region head, their composition
and initialisation."""
