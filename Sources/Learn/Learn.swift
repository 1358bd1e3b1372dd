public enum LearnModule {}
