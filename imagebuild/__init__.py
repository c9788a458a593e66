"""`noops image build`: layered, reproducible images with noops-init as PID 1 (docs/images.md)."""
