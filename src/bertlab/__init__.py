"""bertlab: fine-tune BERT-family encoders for text classification and regression."""
from bertlab.cli.resolvers import register_resolvers

register_resolvers()
