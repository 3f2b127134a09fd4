"""Model sources: names, import paths, checkpoint files and folders, Hugging Face and timm."""
