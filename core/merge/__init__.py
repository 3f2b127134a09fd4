"""Merging a PEFT LoRA adapter into its base, out of core: `BASE --merge ADAPTER --output OUT`."""
