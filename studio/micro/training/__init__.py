"""Training the micro model, one module per stage; ``studio.micro.train`` runs them (its docstring is the
recipe)."""
