"""What a user runs on a trained model, or to see the whole toolkit at work: evaluation, prediction, the web demo,
the quickstart and its plots, and Stage-1 CoT generation with an Omni model."""
