"""Finding the training rows whose label looks wrong (find_label_issues.py): confident learning
(cleanlab) over out-of-sample probabilities."""
