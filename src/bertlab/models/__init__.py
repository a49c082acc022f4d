"""The LightningModule (classifier), its losses, and the optimizer/scheduler wiring."""
