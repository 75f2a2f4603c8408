"""The micro model: a Stable Diffusion 1.x-shaped model trained here, on procedural scenes of coloured shapes.

It gives the studio real pictures with no download (the offline default) and gives the tests a model whose
output has meaning they can check (colours, shapes, edges). ``scenes`` draws the domain, ``detect`` reads it
back, ``model`` builds the standard diffusers/transformers modules, ``train`` trains them and ``evaluate``
measures them.
"""
