"""Stage 3, rules: ``Track``s (and time) -> ``Finding``s, per camera and zone.

``base`` defines ``Finding`` and the ``Rule`` protocol; one module per rule (stopping, sidewalk, wrongway,
redlight, speeding, turns, overload, encroachment, gathering) with shared machinery (``zonestate``,
``pertrack``, ``incidents``, ``schedule``, ``signal``, ``homography``, ``background``, ``motion``); the strict
rule and scene configs (``ruleconfig``, ``sceneconfig``, ``validate``) and ``registry``, which builds a camera's
rule set. Findings go to the pipeline, which makes ``Event``s of them.
"""
