"""Image backends: how a render request becomes image bytes."""
