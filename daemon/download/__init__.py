"""Downloading the images of a bounding box from the graph API (the `download` command).

``box`` parses and splits boxes, ``search`` asks the graph API (``daemon.mapillary.graph``,
splitting boxes that return its limit), ``fetch`` brings one thumbnail to disk safely, ``index``
writes ``images.geojson`` and ``job`` runs the whole download. Every request is retried by the
shared loop of ``daemon.mapillary.retry``.
"""
