"""Fine-tuning, evaluation, model bundles and the retrain loop. Imports torch lazily."""
