"""The stages wired together: one detector loop feeding one pipeline per camera.

``detect_loop`` takes scheduler batches from every camera through the shared detector; ``camera`` is one
camera's path (tracker -> rules -> ``Finding``s -> ``Event``s with evidence); ``events`` turns findings into
contract ``Event``s with stable ids; ``replay`` runs a clip through the same code with no broker. Events go to
``delivery``.
"""
